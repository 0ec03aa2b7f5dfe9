//! Errors as text.

/// An error and its causes on one line, each cause once (messages that already contain
/// their source's text are not repeated). The one formatter of error chains.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner: {0}")]
    struct Inner(#[source] std::io::Error);

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::other("disk full");
        assert_eq!(
            error_chain(&Outer(Inner(io))),
            "outer: inner: disk full",
            "the io error is already in the inner message and is not repeated"
        );
    }
}
