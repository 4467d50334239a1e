use super::*;
use std::sync::OnceLock;

fn detector() -> &'static DeviceDetector {
    static D: OnceLock<DeviceDetector> = OnceLock::new();
    D.get_or_init(|| DeviceDetector::new(100).unwrap())
}

#[track_caller]
fn check(ua: &str, kind: &str, os: &str, browser: &str) -> Device {
    let d = detector().parse(ua);
    assert_eq!(d.kind, kind, "type of {ua}: {d:?}");
    assert_eq!(d.os.as_deref(), Some(os), "os of {ua}: {d:?}");
    assert_eq!(
        d.browser.as_deref(),
        Some(browser),
        "browser of {ua}: {d:?}"
    );
    d
}

// The agents printed by the article's rake task.
#[test]
fn article_sample_agents() {
    let d = check(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_3) AppleWebKit/537.75.14 (KHTML, like Gecko) Version/7.0.3 Safari/7046A194A",
        "desktop",
        "Mac OS X",
        "Safari",
    );
    assert_eq!(d.os_version.as_deref(), Some("10.9.3"));
    assert_eq!(d.browser_version.as_deref(), Some("7.0"));
    let d = check(
        "Mozilla/5.0 (compatible; MSIE 9.0; AOL 9.7; AOLBuild 4343.19; Windows NT 6.1; WOW64; Trident/5.0; FunWebProducts)",
        "desktop",
        "Windows",
        "AOL",
    );
    // Windows NT 6.1 is Windows 7; the AOL shell is named, not hidden as IE 9.
    assert_eq!(d.os_version.as_deref(), Some("7"));
    assert_eq!(d.browser_version.as_deref(), Some("9.7"));
    let d = check(
        "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; AS; rv:11.0) like Gecko",
        "desktop",
        "Windows",
        "IE",
    );
    assert_eq!(d.browser_version.as_deref(), Some("11.0"));
    check(
        "Mozilla/5.0 (Windows NT x.y; Win64; x64; rv:10.0) Gecko/20100101 Firefox/10.0",
        "desktop",
        "Windows",
        "Firefox",
    );
}

#[test]
fn current_browsers() {
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        "desktop",
        "Windows",
        "Chrome",
    );
    check(
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.68",
        "desktop",
        "Windows",
        "Edge",
    );
    check(
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
        "desktop",
        "Ubuntu",
        "Firefox",
    );
    check(
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        "desktop",
        "Linux",
        "Chrome",
    );
    let d = check(
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "smartphone",
        "iOS",
        "Mobile Safari",
    );
    assert_eq!(d.os_version.as_deref(), Some("17.6"));
    assert_eq!(d.brand.as_deref(), Some("Apple"));
    check(
        "Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
        "tablet",
        "iOS",
        "Mobile Safari",
    );
    let d = check(
        "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.6723.58 Mobile Safari/537.36",
        "smartphone",
        "Android",
        "Chrome Mobile",
    );
    assert_eq!(d.brand.as_deref(), Some("Samsung"));
    check(
        "Mozilla/5.0 (Linux; Android 13; SM-X700) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
        "tablet",
        "Android",
        "Chrome",
    );
    check(
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
        "desktop",
        "Mac OS X",
        "Safari",
    );
}

#[test]
fn crawlers_are_bots() {
    for ua in [
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    ] {
        let d = detector().parse(ua);
        assert!(d.is_bot, "{ua}: {d:?}");
        assert_eq!(d.kind, "bot", "{ua}");
        assert_eq!(d.bot.as_deref(), Some("search"), "{ua}");
    }
    let person = detector().parse("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36");
    assert!(!person.is_bot);
    assert_eq!(person.bot, None);
}

/// AI crawlers, headless browsers and uptime checkers: named, with their kind.
#[test]
fn newer_bots_are_named_with_their_kind() {
    for (ua, name, kind) in [
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
            "GPTBot",
            "ai",
        ),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; ClaudeBot/1.0; +claudebot@anthropic.com)",
            "ClaudeBot",
            "ai",
        ),
        ("CCBot/2.0 (https://commoncrawl.org/faq/)", "CCBot", "ai"),
        (
            "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; PerplexityBot/1.0; +https://perplexity.ai/perplexitybot)",
            "PerplexityBot",
            "ai",
        ),
        (
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
            "HeadlessChrome",
            "headless",
        ),
        (
            "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
            "Lighthouse",
            "headless",
        ),
        (
            "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "UptimeRobot",
            "monitor",
        ),
        (
            "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
            "Pingdom",
            "monitor",
        ),
        ("kube-probe/1.29", "kube-probe", "monitor"),
    ] {
        let d = detector().parse(ua);
        assert!(d.is_bot, "{ua}: {d:?}");
        assert_eq!(d.kind, "bot", "{ua}");
        assert_eq!(d.browser.as_deref(), Some(name), "{ua}");
        assert_eq!(d.bot.as_deref(), Some(kind), "{ua}");
    }
    // A crawler only the general parsers know is a crawler.
    let d = detector().parse("Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)");
    assert_eq!(
        (d.is_bot, d.bot.as_deref()),
        (true, Some("crawler")),
        "{d:?}"
    );
}

#[test]
fn garbage_is_unknown_not_an_error() {
    let d = detector().parse("definitely not a browser ✓");
    assert_eq!(d.kind, "unknown");
    assert_eq!(d.browser, None);
    assert!(!d.is_bot);
}

#[test]
fn cache_returns_the_same_parse() {
    let det = DeviceDetector::new(2).unwrap();
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0";
    let a = det.detect(ua);
    let b = det.detect(ua);
    assert!(Arc::ptr_eq(&a, &b));
    assert_eq!(*a, det.parse(ua));
}
