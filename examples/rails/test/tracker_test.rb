# Runs against a live tracklake at TRACKLAKE_URL (the Rust test suite starts
# one): the article's calls return what the article's methods returned.
require "minitest/autorun"
require_relative "../lib/tracker"

class TrackerTest < Minitest::Test
  UA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_3) AppleWebKit/537.75.14 (KHTML, like Gecko) Version/7.0.3 Safari/7046A194A".freeze

  def test_put_returns_at_once_and_get_reads_back
    user = 1000 + rand(1_000_000)
    started = Time.now
    12.times do |i|
      assert Tracker::Put.event(user_id: user, event_type: "login", user_agent: UA,
                                ip_address: "11.174.250.238", event_at: (Time.now.utc - (i + 1) * 86_400).iso8601)
      20.times { Tracker::Put.event(user_id: user, event_type: "material-view", user_agent: UA, ip_address: "11.174.250.238") }
    end
    assert_operator Time.now - started, :<, 1.0, "Put.event must not wait for the network"
    Tracker.flush

    recent = Tracker::Get.recent_activity(user)
    assert_equal 50, recent.size
    assert_equal %w[device event_at event_type ip_address user_agent], recent.first.keys.sort
    assert_kind_of DateTime, recent.first["event_at"]
    assert_equal "Safari", recent.first["device"]["browser"]
    assert_equal "desktop", recent.first["device"]["type"]
    assert(recent.each_cons(2).all? { |a, b| a["event_at"] >= b["event_at"] }, "newest first")

    logins = Tracker::Get.logins(user)
    assert_equal 10, logins.size, "ten logins, though 240 views are newer"
    assert(logins.all? { |t| t["event_type"] == "login" })
    assert_equal 0, Tracker.stats[:failed]
  end

  def test_invalid_entities_raise_like_the_article
    assert_raises(ArgumentError) { Tracker::Put.event(event_type: "login") }
  end
end
