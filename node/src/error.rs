//! Errors a command can answer with. The texts are Redis's (or Pika's where docs/compatibility.md
//! says Pika differs): clients and tests match on them.

/// A command failure, turned into a `-...` reply by [`CmdError::text`].
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    #[error("ERR value is not an integer or out of range")]
    NotInteger,
    #[error("ERR value is not a valid float")]
    NotFloat,
    #[error("ERR increment or decrement would overflow")]
    Overflow,
    #[error("ERR syntax error")]
    Syntax,
    #[error("ERR no such key")]
    NoSuchKey,
    #[error("ERR index out of range")]
    IndexOutOfRange,
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    #[error("ERR Partition not found")]
    PartitionNotFound,
    #[error("ERR Server in read-only")]
    ReadOnly,
    /// A fenced master slot during a cutover: retry after the route changes.
    #[error("TRYAGAIN slot {0} is fenced for a cutover, retry later")]
    Fenced(u32),
    /// The master's lease from the operator ran out (`lease`): retry once it is renewed or
    /// another node has taken over.
    #[error("TRYAGAIN slot {0}: this master's lease expired, retry later")]
    LeaseExpired(u32),
    /// Replicated acknowledgement (`min-replica-acks`) with fewer replicas streaming from the
    /// slot than it needs: refused before it ran, so it may be retried.
    #[error("TRYAGAIN slot {slot}: {streaming} of the {need} replicas a write must reach are streaming, retry later")]
    TooFewReplicas { slot: u32, streaming: usize, need: usize },
    #[error("ERR This command is not supported in current configuration")]
    NotSupportedInSharding,
    /// Any other message, already including its `ERR `-style prefix.
    #[error("{0}")]
    Msg(String),
    #[error("ERR storage error: {0}")]
    Storage(#[from] rocksdb::Error),
}

impl CmdError {
    pub fn msg(text: impl Into<String>) -> Self {
        CmdError::Msg(text.into())
    }

    /// `ERR <text>`.
    pub fn err(text: impl std::fmt::Display) -> Self {
        CmdError::Msg(format!("ERR {text}"))
    }
}

pub type CmdResult<T> = Result<T, CmdError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_the_texts_proxy_and_operator_recognise() {
        assert!(common::protocol::is_redirect(CmdError::PartitionNotFound.to_string().as_bytes()));
        assert!(common::protocol::is_redirect(CmdError::Fenced(3).to_string().as_bytes()));
        assert!(common::protocol::is_redirect(CmdError::LeaseExpired(3).to_string().as_bytes()));
        assert!(!common::protocol::is_redirect(CmdError::ReadOnly.to_string().as_bytes()));
    }
}
