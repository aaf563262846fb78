//! Redis-style glob matching (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes) for KEYS, SCAN MATCH and
//! CONFIG GET.

pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    matches(pattern, text, 0)
}

fn matches(mut p: &[u8], mut t: &[u8], depth: usize) -> bool {
    // Bound recursion on hostile patterns like "*a*a*a*a...".
    if depth > 64 {
        return false;
    }
    while let Some(&c) = p.first() {
        match c {
            b'*' => {
                while p.first() == Some(&b'*') {
                    p = &p[1..];
                }
                if p.is_empty() {
                    return true;
                }
                for start in 0..=t.len() {
                    if matches(p, &t[start..], depth + 1) {
                        return true;
                    }
                }
                return false;
            }
            b'?' => {
                if t.is_empty() {
                    return false;
                }
                t = &t[1..];
                p = &p[1..];
            }
            b'[' => {
                let Some(&ch) = t.first() else { return false };
                let (matched, rest) = match_class(&p[1..], ch);
                if !matched {
                    return false;
                }
                p = rest;
                t = &t[1..];
            }
            b'\\' if p.len() >= 2 => {
                if t.first() != Some(&p[1]) {
                    return false;
                }
                p = &p[2..];
                t = &t[1..];
            }
            _ => {
                if t.first() != Some(&c) {
                    return false;
                }
                p = &p[1..];
                t = &t[1..];
            }
        }
    }
    t.is_empty()
}

/// Matches `ch` against a class body (after `[`); returns the result and the pattern after `]`.
fn match_class(mut p: &[u8], ch: u8) -> (bool, &[u8]) {
    let negate = p.first() == Some(&b'^');
    if negate {
        p = &p[1..];
    }
    let mut matched = false;
    loop {
        match p {
            [] => break,
            [b']', rest @ ..] => {
                p = rest;
                break;
            }
            [b'\\', c, rest @ ..] => {
                matched |= *c == ch;
                p = rest;
            }
            [a, b'-', b, rest @ ..] if *b != b']' => {
                let (lo, hi) = if a <= b { (*a, *b) } else { (*b, *a) };
                matched |= (lo..=hi).contains(&ch);
                p = rest;
            }
            [c, rest @ ..] => {
                matched |= *c == ch;
                p = rest;
            }
        }
    }
    (matched != negate, p)
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn redis_patterns() {
        assert!(glob_match(b"*", b"anything"));
        assert!(glob_match(b"h?llo", b"hello"));
        assert!(glob_match(b"h*llo", b"heeeello"));
        assert!(glob_match(b"h[ae]llo", b"hallo"));
        assert!(!glob_match(b"h[^e]llo", b"hello"));
        assert!(glob_match(b"h[a-b]llo", b"hbllo"));
        assert!(glob_match(b"user:\\*", b"user:*"));
        assert!(!glob_match(b"user:\\*", b"user:1"));
        assert!(glob_match(b"max*", b"maxmemory"));
        assert!(!glob_match(b"a*b", b"acd"));
        assert!(!glob_match(&b"*a".repeat(100), &b"a".repeat(50)));
    }
}
