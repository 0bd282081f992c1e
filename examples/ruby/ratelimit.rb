# The cross-language contract of docs/rate-limiter.md, from Ruby with redis-rb (Debian: ruby-redis):
# one FCALL of the admin-loaded `ratelimit` library per decision (FCALL_RO for a peek). The
# application user may not send Lua (-@scripting +fcall +fcall_ro).
require "json"
require "redis"

module RateLimit
  SUFFIX = { "gcra" => "g", "sliding_log" => "s", "fixed_window" => "f" }.freeze

  # The key layout the Python client uses: the braces make the whole logical key the cluster hash tag.
  def self.make_key(prefix, key, algorithm)
    "#{prefix}:{#{key}}:#{SUFFIX.fetch(algorithm)}"
  end

  def self.decide(redis, key:, limit:, window_ms:, algorithm: "gcra", cost: 1, burst: nil, peek: false, prefix: "rl")
    args = [limit, window_ms, cost, peek ? 1 : 0].map(&:to_s)
    args << burst.to_s if algorithm == "gcra" && burst
    name = peek ? "ratelimit_#{algorithm}_ro" : "ratelimit_#{algorithm}"
    allowed, remaining, retry_us, reset_us = redis.call(peek ? "FCALL_RO" : "FCALL", name, 1,
                                                        make_key(prefix, key, algorithm), *args)
    { allowed: allowed == 1, remaining: remaining, retry_after: retry_us / 1e6, reset_after: reset_us / 1e6 }
  end

  def self.library_version(redis)
    redis.call("FCALL_RO", "ratelimit_version", 0)
  end
end

# `ruby ratelimit.rb <redis-url> <key> <limit> <window_ms> <n>`: n hits, one JSON line each, a peek,
# then the library version; what tests/integration/test_ratelimit_examples.py runs.
if $PROGRAM_NAME == __FILE__
  url, key, limit, window_ms, n = ARGV
  redis = Redis.new(url: url, reconnect_attempts: 0)
  n.to_i.times { puts JSON.generate(RateLimit.decide(redis, key: key, limit: limit.to_i, window_ms: window_ms.to_i)) }
  puts JSON.generate(RateLimit.decide(redis, key: key, limit: limit.to_i, window_ms: window_ms.to_i, peek: true))
  puts JSON.generate(version: RateLimit.library_version(redis))
  redis.close
end
