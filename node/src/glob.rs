//! Redis-style glob matching (`*`, `?`, `[a-z]`, `[^x]`, `\` escapes) for KEYS, SCAN MATCH and
//! CONFIG GET.

pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Greedy matching with one backtrack point (the last `*`): every other token matches exactly
    // one byte, so retrying from the last star is enough, and the cost stays O(pattern x text)
    // even for hostile patterns like "*a*a*a...".
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None; // (pattern after the star, text position)
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            while p < pattern.len() && pattern[p] == b'*' {
                p += 1;
            }
            star = Some((p, t));
            continue;
        }
        if p < pattern.len() {
            if let Some(next) = match_one(&pattern[p..], text[t]) {
                p += next;
                t += 1;
                continue;
            }
        }
        match star {
            Some((after_star, from)) => {
                p = after_star;
                t = from + 1;
                star = Some((after_star, from + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches one non-star token at the start of `p` against `ch`; the token's length if it matches.
fn match_one(p: &[u8], ch: u8) -> Option<usize> {
    match p[0] {
        b'?' => Some(1),
        b'[' => {
            let (matched, rest) = match_class(&p[1..], ch);
            matched.then_some(p.len() - rest.len())
        }
        b'\\' if p.len() >= 2 => (p[1] == ch).then_some(2),
        c => (c == ch).then_some(1),
    }
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
