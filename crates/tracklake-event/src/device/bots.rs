//! Bots by name, beyond what the general parsers know: AI crawlers,
//! headless browsers and uptime checkers announce themselves in their user
//! agent but are new or niche enough that uap-core and woothee miss many
//! (HeadlessChrome parses as a browser). Matched case-insensitively; the
//! first match wins, so more specific names come before the ones they
//! contain.

/// What kind of bot a user agent is.
pub const KINDS: [&str; 5] = ["ai", "search", "monitor", "headless", "crawler"];

/// `(token in the user agent, name, kind)`.
const KNOWN: &[(&str, &str, &str)] = &[
    // AI crawlers and assistants fetching for a user.
    ("gptbot", "GPTBot", "ai"),
    ("chatgpt-user", "ChatGPT-User", "ai"),
    ("oai-searchbot", "OAI-SearchBot", "ai"),
    ("claudebot", "ClaudeBot", "ai"),
    ("claude-user", "Claude-User", "ai"),
    ("claude-searchbot", "Claude-SearchBot", "ai"),
    ("claude-web", "Claude-Web", "ai"),
    ("anthropic-ai", "anthropic-ai", "ai"),
    ("ccbot", "CCBot", "ai"),
    ("perplexitybot", "PerplexityBot", "ai"),
    ("perplexity-user", "Perplexity-User", "ai"),
    ("bytespider", "Bytespider", "ai"),
    ("google-extended", "Google-Extended", "ai"),
    ("applebot-extended", "Applebot-Extended", "ai"),
    ("amazonbot", "Amazonbot", "ai"),
    ("meta-externalagent", "meta-externalagent", "ai"),
    ("meta-externalfetcher", "meta-externalfetcher", "ai"),
    ("cohere-ai", "cohere-ai", "ai"),
    ("mistralai-user", "MistralAI-User", "ai"),
    ("duckassistbot", "DuckAssistBot", "ai"),
    ("youbot", "YouBot", "ai"),
    ("diffbot", "Diffbot", "ai"),
    ("ai2bot", "AI2Bot", "ai"),
    ("timpibot", "Timpibot", "ai"),
    // Search engines.
    ("googlebot", "Googlebot", "search"),
    ("bingbot", "bingbot", "search"),
    ("yandexbot", "YandexBot", "search"),
    ("baiduspider", "Baiduspider", "search"),
    ("duckduckbot", "DuckDuckBot", "search"),
    ("applebot", "Applebot", "search"),
    ("slurp", "Yahoo! Slurp", "search"),
    ("seznambot", "SeznamBot", "search"),
    ("petalbot", "PetalBot", "search"),
    ("qwant", "Qwantbot", "search"),
    ("sogou", "Sogou", "search"),
    ("yeti/", "Yeti", "search"),
    // Uptime and synthetic checks.
    ("uptimerobot", "UptimeRobot", "monitor"),
    ("pingdom", "Pingdom", "monitor"),
    ("statuscake", "StatusCake", "monitor"),
    ("site24x7", "Site24x7", "monitor"),
    ("betteruptime", "Better Uptime", "monitor"),
    ("better uptime", "Better Uptime", "monitor"),
    ("datadogsynthetics", "Datadog Synthetics", "monitor"),
    ("checkly", "Checkly", "monitor"),
    ("uptime-kuma", "Uptime Kuma", "monitor"),
    ("freshping", "Freshping", "monitor"),
    ("newrelicpinger", "New Relic Synthetics", "monitor"),
    ("hetrixtools", "HetrixTools", "monitor"),
    ("updown.io", "updown.io", "monitor"),
    ("elb-healthchecker", "ELB-HealthChecker", "monitor"),
    ("googlehc", "GoogleHC", "monitor"),
    ("kube-probe", "kube-probe", "monitor"),
    ("blackbox exporter", "Blackbox Exporter", "monitor"),
    // Browsers driven by a program.
    ("headlesschrome", "HeadlessChrome", "headless"),
    ("chrome-lighthouse", "Lighthouse", "headless"),
    ("phantomjs", "PhantomJS", "headless"),
    ("slimerjs", "SlimerJS", "headless"),
    ("jsdom", "jsdom", "headless"),
    ("cypress/", "Cypress", "headless"),
];

/// The name and kind of a bot this user agent names.
pub(super) fn known(user_agent: &str) -> Option<(&'static str, &'static str)> {
    let lower = user_agent.to_ascii_lowercase();
    KNOWN
        .iter()
        .find(|(token, _, _)| lower.contains(token))
        .map(|&(_, name, kind)| (name, kind))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_and_tokens_are_lower_case() {
        for (token, _, kind) in KNOWN {
            assert_eq!(*token, token.to_ascii_lowercase(), "{token}");
            assert!(KINDS.contains(kind), "{kind}");
        }
    }

    #[test]
    fn the_specific_name_wins() {
        let ua = "Mozilla/5.0 (compatible; Applebot-Extended/0.1)";
        assert_eq!(known(ua), Some(("Applebot-Extended", "ai")));
        assert_eq!(
            known("Mozilla/5.0 (Applebot/0.1)"),
            Some(("Applebot", "search"))
        );
        assert_eq!(known("Mozilla/5.0 (Windows NT 10.0) Chrome/130.0"), None);
    }
}
