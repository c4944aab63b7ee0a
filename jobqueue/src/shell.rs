//! Quoting for POSIX shells, used for every value written into a job script.

use std::borrow::Cow;

fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c)
}

/// Quotes `s` as one shell word with no expansion at all: unchanged when it
/// only holds characters that need no quoting, else in single quotes with
/// each `'` written as `'\''`. The empty string becomes `''`.
pub fn quote(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.chars().all(is_safe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(format!("'{}'", s.replace('\'', r"'\''")))
}

fn double_quoted(s: &str, escape: &[char]) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if escape.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Quotes `s` as one shell word in which `$VAR` and `${VAR}` still expand
/// (for paths such as `$TMPDIR/shoal` or `$HOME/sched.json`): unchanged when
/// safe, else in double quotes (always when it holds a `$`, so the expanded
/// value is not split at spaces) with `"`, `\` and `` ` `` escaped.
pub fn quote_expanding(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.chars().all(is_safe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(double_quoted(s, &['"', '\\', '`']))
}

/// Quotes a value inside a directive line (`#SBATCH -p VALUE`): unchanged
/// when safe, else in double quotes with `"`, `\`, `$` and `` ` `` escaped.
/// Double quotes are what every batch system's directive parser reads.
pub fn quote_directive(s: &str) -> Cow<'_, str> {
    if !s.is_empty() && s.chars().all(is_safe) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(double_quoted(s, &['"', '\\', '$', '`']))
}

/// Joins words with spaces, each [`quote`]d: how a command is shown in errors.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    words
        .iter()
        .map(|w| quote(w.as_ref()).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn safe_words_are_unchanged() {
        assert_eq!(quote("--nthreads"), "--nthreads");
        assert_eq!(quote("/scratch/a.json"), "/scratch/a.json");
        assert_eq!(quote("a=b,c:d"), "a=b,c:d");
    }

    #[test]
    fn spaces_quotes_and_specials_are_single_quoted() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote("a\"b"), "'a\"b'");
        assert_eq!(quote("x;rm -rf /"), "'x;rm -rf /'");
    }

    #[test]
    fn expanding_quote_keeps_variables() {
        assert_eq!(quote_expanding("$TMPDIR/shoal"), "\"$TMPDIR/shoal\"");
        assert_eq!(quote_expanding("/plain/path"), "/plain/path");
        assert_eq!(quote_expanding("${HOME}/my dir"), "\"${HOME}/my dir\"");
        assert_eq!(quote_expanding("a\"b`c\\"), "\"a\\\"b\\`c\\\\\"");
    }

    #[test]
    fn directive_values_use_double_quotes() {
        assert_eq!(quote_directive("debug"), "debug");
        assert_eq!(quote_directive("my queue"), "\"my queue\"");
        assert_eq!(quote_directive("a\"$b"), "\"a\\\"\\$b\"");
    }

    #[test]
    fn join_shows_a_pasteable_command() {
        assert_eq!(join(&["sbatch", "my job.sh"]), "sbatch 'my job.sh'");
    }

    /// The quoted words survive a real shell unchanged.
    #[test]
    fn round_trips_through_sh() {
        let words = [
            "plain",
            "a b",
            "it's",
            "\"dq\"",
            "$HOME",
            "`id`",
            "",
            "tab\there",
            "new\nline",
            "back\\slash",
        ];
        let script = format!("printf '%s\\0' {}", join(&words));
        let Ok(out) = Command::new("sh").arg("-c").arg(&script).output() else {
            return; // no sh on this machine: nothing to check against
        };
        let got: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        assert_eq!(&got[..words.len()], &words[..]);
    }

    #[test]
    fn expanding_round_trip_through_sh() {
        let word = "$SHOAL_T/x \"y\" `z`\\";
        let script = format!("printf '%s' {}", quote_expanding(word));
        let Ok(out) = Command::new("sh")
            .env("SHOAL_T", "/t")
            .arg("-c")
            .arg(&script)
            .output()
        else {
            return;
        };
        assert_eq!(String::from_utf8_lossy(&out.stdout), "/t/x \"y\" `z`\\");
    }
}
