//! Parameter names: the canonical list, old aliases, and "did you mean".

/// Every parameter name, as dask-jobqueue spells it where it has one.
pub const KEYS: &[&str] = &[
    "cores",
    "memory",
    "processes",
    "name",
    "queue",
    "account",
    "project",
    "walltime",
    "job_extra_directives",
    "job_directives_skip",
    "job_script_prologue",
    "job_script_epilogue",
    "log_directory",
    "local_directory",
    "interface",
    "death_timeout",
    "worker_extra_args",
    "python",
    "shebang",
    "resource_spec",
    "job_cpu",
    "job_mem",
    "lsf_units",
    "disk",
    "array",
    "scheduler_file",
    "scheduler_file_timeout",
    "shoal",
    "lifetime",
    "lifetime_stagger",
    "job_id_pattern",
];

/// Parameters that hold a list: each occurrence of the key adds one element.
pub const LIST_KEYS: &[&str] = &[
    "job_extra_directives",
    "job_directives_skip",
    "job_script_prologue",
    "job_script_epilogue",
    "worker_extra_args",
];

/// Old names still found in dask-jobqueue configs: (old, new).
pub const DEPRECATED_ALIASES: &[(&str, &str)] = &[
    ("job_extra", "job_extra_directives"),
    ("env_extra", "job_script_prologue"),
    ("header_skip", "job_directives_skip"),
    ("extra", "worker_extra_args"),
];

/// The canonical name of `key`: itself, the new name of a deprecated alias
/// (second value `true`), `account` for `project` (SGE's and LSF's own word,
/// not deprecated), or `None` when unknown.
pub fn canonical(key: &str) -> Option<(&'static str, bool)> {
    if key == "project" {
        return Some(("account", false));
    }
    if let Some(k) = KEYS.iter().find(|k| **k == key) {
        return Some((k, false));
    }
    DEPRECATED_ALIASES
        .iter()
        .find(|(old, _)| *old == key)
        .map(|(_, new)| (*new, true))
}

/// Edit distance (insertions, deletions, substitutions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let old = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = old;
        }
    }
    row[b.len()]
}

/// The candidate closest to `word` when it is close enough to be a typo
/// (distance at most 1 + a third of its length), or one that contains it.
pub fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let word = word.to_ascii_lowercase();
    let limit = 1 + word.chars().count() / 3;
    candidates
        .iter()
        .map(|c| (distance(&word, c), *c))
        .filter(|(d, c)| *d <= limit || (word.len() >= 4 && c.contains(word.as_str())))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_map_to_new_names() {
        assert_eq!(canonical("job_extra"), Some(("job_extra_directives", true)));
        assert_eq!(canonical("env_extra"), Some(("job_script_prologue", true)));
        assert_eq!(
            canonical("header_skip"),
            Some(("job_directives_skip", true))
        );
        assert_eq!(canonical("extra"), Some(("worker_extra_args", true)));
        assert_eq!(canonical("project"), Some(("account", false)));
        assert_eq!(canonical("cores"), Some(("cores", false)));
        assert_eq!(canonical("Cores"), None);
    }

    #[test]
    fn suggestions() {
        assert_eq!(closest("corse", KEYS), Some("cores"));
        assert_eq!(closest("walltim", KEYS), Some("walltime"));
        assert_eq!(
            closest("job_extra_directive", KEYS),
            Some("job_extra_directives")
        );
        assert_eq!(closest("prologue", KEYS), Some("job_script_prologue"));
        assert_eq!(closest("zzzzzzzz", KEYS), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }

    #[test]
    fn list_keys_are_keys() {
        for k in LIST_KEYS {
            assert!(KEYS.contains(k), "{k}");
        }
        for (_, new) in DEPRECATED_ALIASES {
            assert!(KEYS.contains(new), "{new}");
        }
    }
}
