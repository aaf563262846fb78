//! Who a connection is, and what it may run: one policy for the node and the proxy.
//!
//! Two users, in the shape Redis 6 clients know (`AUTH <user> <password>`, `HELLO 2 AUTH ...`):
//! - `admin` runs everything. Its password is the node's `requirepass` (Pika's admin password)
//!   and the proxy's `admin-password`.
//! - `default` runs the data commands: no admin command and, on a node, none of those listed in
//!   `userblacklist`. Its password is the node's `userpass` and the proxy's `password`.
//!
//! `AUTH <password>` (Pika's and Redis 5's form) tries the admin password first, then the user's.
//! Which role a connection has before AUTH follows Pika:
//! - no admin password: every client is admin (a development setup; the operator always sets one);
//! - an admin password but no user password: clients run data commands without AUTH;
//! - both: nothing but AUTH, HELLO and QUIT before AUTH.
//!
//! A user password without an admin password would make every client admin, so it is refused
//! ([`Passwords::check`]) rather than silently meaning nothing.

/// What a connection may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Nothing but AUTH, HELLO and QUIT.
    None,
    /// Data commands.
    User,
    /// Everything.
    Admin,
}

pub const ADMIN_USER: &str = "admin";
pub const DEFAULT_USER: &str = "default";

/// A password, and during a rotation the previous one, still accepted (empty: none).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Accepted {
    pub current: String,
    pub previous: String,
}

impl Accepted {
    pub fn new(current: impl Into<String>, previous: impl Into<String>) -> Accepted {
        Accepted { current: current.into(), previous: previous.into() }
    }

    pub fn is_set(&self) -> bool {
        !self.current.is_empty()
    }

    pub fn accepts(&self, given: &[u8]) -> bool {
        (!self.current.is_empty() && given == self.current.as_bytes())
            || (!self.previous.is_empty() && given == self.previous.as_bytes())
    }
}

impl std::fmt::Debug for Accepted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (self.current.is_empty(), self.previous.is_empty()) {
            (true, _) => "Accepted(none)",
            (false, true) => "Accepted(<redacted>)",
            (false, false) => "Accepted(<redacted>, previous <redacted>)",
        })
    }
}

/// The passwords of a server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Passwords {
    pub admin: Accepted,
    pub user: Accepted,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("ERR Client sent AUTH, but no password is set")]
    NoPassword,
    /// `AUTH <password>` with a password that is neither (Pika's reply).
    #[error("ERR invalid password")]
    Invalid,
    /// `AUTH <user> <password>` that does not match (Redis 6's reply).
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
}

/// A refused configuration: the text says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub &'static str);

impl Passwords {
    /// Refuses a user password without an admin password: every client would be admin.
    pub fn check(&self) -> Result<(), PolicyError> {
        if self.user.is_set() && !self.admin.is_set() {
            return Err(PolicyError(
                "a user password (userpass) without an admin password (requirepass) would make every client admin; \
                 set the admin password too",
            ));
        }
        Ok(())
    }

    /// A connection's role before any AUTH.
    pub fn initial_role(&self) -> Role {
        match (self.admin.is_set(), self.user.is_set()) {
            (false, _) => Role::Admin,
            (true, false) => Role::User,
            (true, true) => Role::None,
        }
    }

    /// What a connection with `current` is after a failed AUTH: Pika's form (`AUTH <password>`)
    /// drops to [`Passwords::initial_role`], as Pika does; Redis 6's form (`AUTH <user>
    /// <password>`) keeps what it had, as Redis does.
    pub fn after_failed_auth(&self, current: Role, user: Option<&[u8]>) -> Role {
        match user {
            None => self.initial_role(),
            Some(_) => current,
        }
    }

    /// The role `AUTH [user] password` gives (on an error: [`Passwords::after_failed_auth`]).
    pub fn authenticate(&self, user: Option<&[u8]>, password: &[u8]) -> Result<Role, AuthError> {
        let initial = self.initial_role();
        match user {
            None => {
                if !self.admin.is_set() && !self.user.is_set() {
                    Err(AuthError::NoPassword)
                } else if self.admin.accepts(password) {
                    Ok(Role::Admin)
                } else if self.user.accepts(password) {
                    Ok(Role::User.max(initial))
                } else {
                    Err(AuthError::Invalid)
                }
            }
            // A user without a password is open to anyone, as Redis's `nopass` users are.
            Some(u) if u == ADMIN_USER.as_bytes() => match !self.admin.is_set() || self.admin.accepts(password) {
                true => Ok(Role::Admin),
                false => Err(AuthError::WrongPass),
            },
            Some(u) if u == DEFAULT_USER.as_bytes() => match !self.user.is_set() || self.user.accepts(password) {
                true => Ok(Role::User.max(initial)),
                false => Err(AuthError::WrongPass),
            },
            Some(_) => Err(AuthError::WrongPass),
        }
    }
}

/// Redis 6's reply to a command the user may not run.
pub fn no_permission(command: &str) -> String {
    format!("NOPERM this user has no permissions to run the '{command}' command or its subcommand")
}

/// The reply to a command sent before a required AUTH (Pika's text).
pub const NOAUTH: &str = "ERR NOAUTH Authentication required.";

/// What a client sends to authenticate: `AUTH <user> <password>`, or `AUTH <password>` when
/// `user` is None.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub user: Option<String>,
    pub password: String,
}

impl Credential {
    /// The admin user's credential.
    pub fn admin(password: impl Into<String>) -> Credential {
        Credential { user: Some(ADMIN_USER.into()), password: password.into() }
    }

    /// `AUTH <password>`: the form every server version understands (a node of the user
    /// password only).
    pub fn password(password: impl Into<String>) -> Credential {
        Credential { user: None, password: password.into() }
    }

    /// The AUTH command's arguments.
    pub fn auth_args(&self) -> Vec<&str> {
        match &self.user {
            Some(user) => vec!["AUTH", user, &self.password],
            None => vec!["AUTH", &self.password],
        }
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({}, <redacted>)", self.user.as_deref().unwrap_or("-"))
    }
}

/// The environment variable a secret option is read from (`requirepass` -> `PIKA_REQUIREPASS`):
/// secrets never travel on a command line, where every user of the machine can read them.
pub fn env_name(option: &str) -> String {
    format!("PIKA_{}", option.to_ascii_uppercase().replace('-', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(admin: &str, user: &str) -> Passwords {
        Passwords { admin: Accepted::new(admin, ""), user: Accepted::new(user, "") }
    }

    #[test]
    fn roles_before_auth_follow_pika() {
        assert_eq!(pw("", "").initial_role(), Role::Admin);
        assert_eq!(pw("a", "").initial_role(), Role::User);
        assert_eq!(pw("a", "u").initial_role(), Role::None);
        assert!(pw("", "u").check().is_err(), "a user password alone would make everyone admin");
        assert!(pw("a", "u").check().is_ok() && pw("", "").check().is_ok());
    }

    #[test]
    fn auth_forms() {
        let p = pw("a", "u");
        assert_eq!(p.authenticate(None, b"a"), Ok(Role::Admin));
        assert_eq!(p.authenticate(None, b"u"), Ok(Role::User));
        assert_eq!(p.authenticate(None, b"x"), Err(AuthError::Invalid));
        assert_eq!(p.authenticate(Some(b"admin"), b"a"), Ok(Role::Admin));
        assert_eq!(
            p.authenticate(Some(b"admin"), b"u"),
            Err(AuthError::WrongPass),
            "the user's password is not admin's"
        );
        assert_eq!(p.authenticate(Some(b"default"), b"u"), Ok(Role::User));
        assert_eq!(p.authenticate(Some(b"default"), b"a"), Err(AuthError::WrongPass));
        assert_eq!(p.authenticate(Some(b"alice"), b"a"), Err(AuthError::WrongPass));
        assert_eq!(pw("", "").authenticate(None, b"x"), Err(AuthError::NoPassword));
        // No user password: the default user is open, and never more than a user.
        assert_eq!(pw("a", "").authenticate(Some(b"default"), b"anything"), Ok(Role::User));
        assert_eq!(pw("a", "").authenticate(None, b"anything"), Err(AuthError::Invalid));
        assert_eq!(p.after_failed_auth(Role::Admin, None), Role::None, "Pika's form drops what it had");
        assert_eq!(p.after_failed_auth(Role::Admin, Some(b"admin")), Role::Admin, "Redis 6's keeps it");
    }

    #[test]
    fn rotation_accepts_both_and_secrets_stay_out_of_logs() {
        let p = Passwords { admin: Accepted::new("a2", "a1"), user: Accepted::new("u2", "u1") };
        for (given, role) in [("a1", Role::Admin), ("a2", Role::Admin), ("u1", Role::User), ("u2", Role::User)] {
            assert_eq!(p.authenticate(None, given.as_bytes()), Ok(role));
        }
        let shown = format!("{p:?} {:?}", Credential::admin("a2"));
        assert!(!shown.contains("a1") && !shown.contains("a2") && !shown.contains("u1"), "{shown}");
        assert_eq!(env_name("requirepass-previous"), "PIKA_REQUIREPASS_PREVIOUS");
    }
}
