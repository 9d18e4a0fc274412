//! "Did you mean" hints.

/// The closest candidate to `input`, phrased as a hint, if one is close enough.
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(input, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The closest candidate by Jaro-Winkler similarity (at least 0.8), ties to the first.
pub fn closest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let score = strsim::jaro_winkler(&input.to_lowercase(), &c.to_lowercase());
        if score >= 0.8 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

/// The user ids a config declares, in config order, without repeats.
pub fn config_users(config: &crate::config::Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in config.groups.iter().flat_map(|g| g.users.iter()) {
        if !out.iter().any(|o| o == u.id()) {
            out.push(u.id().to_string());
        }
    }
    out
}

/// The server names a config declares (top level, then groups'), without repeats.
pub fn config_servers(config: &crate::config::Config) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in config
        .servers
        .iter()
        .chain(config.groups.iter().flat_map(|g| g.servers.iter()))
    {
        if !out.contains(&s.name) {
            out.push(s.name.clone());
        }
    }
    out
}

/// What to say about a name that is not one of `known` (`what` is e.g. "user"): the closest
/// match if any, else the known names (at most 10). `None` when the name is known.
pub fn unknown_name(what: &str, name: &str, known: &[String]) -> Option<String> {
    if known.iter().any(|k| k == name) {
        return None;
    }
    let shown = crate::diagnostics::escape_control(name);
    let hint = match closest(name, known.iter().map(String::as_str)) {
        Some(c) => format!("did you mean `{c}`?"),
        None if known.is_empty() => format!("the config declares no {what}s"),
        None => {
            let mut list: Vec<_> = known.iter().take(10).map(|k| format!("`{k}`")).collect();
            if known.len() > 10 {
                list.push(format!("and {} more", known.len() - 10));
            }
            format!("known {what}s: {}", list.join(", "))
        }
    };
    Some(format!("no {what} `{shown}` in the config; {hint}"))
}

/// For `serve --stdio --user U` and other commands naming a user: `Err` with a
/// did-you-mean message when the config declares no such user.
pub fn check_user(config: &crate::config::Config, user: &str) -> Result<(), String> {
    match unknown_name("user", user, &config_users(config)) {
        Some(m) => Err(m),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names() {
        assert_eq!(
            closest("comand", ["command", "args", "env"]),
            Some("command")
        );
        assert_eq!(
            closest("prodution", ["production", "support"]),
            Some("production")
        );
        assert_eq!(closest("zzz", ["command", "args"]), None);
    }

    #[test]
    fn unknown_names_get_the_closest_or_the_list() {
        let known = vec!["alice".to_string(), "bob".to_string()];
        assert_eq!(unknown_name("user", "alice", &known), None);
        let m = unknown_name("user", "alcie", &known).unwrap();
        assert!(m.contains("did you mean `alice`?"), "{m}");
        let m = unknown_name("user", "zed", &known).unwrap();
        assert!(m.contains("known users: `alice`, `bob`"), "{m}");
    }
}
