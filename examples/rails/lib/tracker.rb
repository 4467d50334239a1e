# Tracker for a Rails app, talking to tracklake: the article's call shape
# (Tracker::Put.event, Tracker::Get.recent_activity, Tracker::Get.logins)
# without DynamoDB and without blocking the request. Put.event only queues;
# a background thread sends batches. Standard library only.
#
#   Tracker::Put.event(user_id: user.id, event_type: "login",
#                      user_agent: request.user_agent, ip_address: request.remote_ip)
#   @recent_activity = Tracker::Get.recent_activity(@model.id)

require "date"
require "json"
require "net/http"
require "securerandom"
require "time"
require "uri"

module Tracker
  BATCH = 100
  INTERVAL = 0.5 # seconds

  class Error < StandardError; end

  class << self
    def url
      @url ||= ENV.fetch("TRACKLAKE_URL", "http://127.0.0.1:7800")
    end
    attr_writer :url

    # Queues one event for the background sender.
    def enqueue(event)
      start_sender
      @queue << event
    end

    # Blocks until everything queued so far was sent (or given up).
    def flush
      return unless @queue
      done = Queue.new
      @queue << [:flush, done]
      done.pop
    end

    def stats
      @stats ||= Hash.new(0)
    end

    def request(method, path, body = nil)
      uri = URI.join(url, path)
      http = Net::HTTP.new(uri.host, uri.port)
      http.open_timeout = 2
      http.read_timeout = 10
      req = method == :get ? Net::HTTP::Get.new(uri) : Net::HTTP::Post.new(uri)
      if body
        req["Content-Type"] = "application/json"
        req.body = JSON.generate(body)
      end
      http.request(req)
    end

    private

    def start_sender
      return if @sender&.alive?
      @queue ||= Queue.new
      @sender = Thread.new { run_sender }
    end

    def run_sender
      batch = []
      loop do
        item = begin
          @queue.pop(timeout: INTERVAL)
        rescue ArgumentError # Ruby < 3.2 has no pop timeout
          @queue.empty? ? (sleep(INTERVAL) && nil) : @queue.pop
        end
        if item.is_a?(Array) && item.first == :flush
          send_batch(batch)
          batch = []
          item.last << true
        elsif item
          batch << item
          if batch.size >= BATCH
            send_batch(batch)
            batch = []
          end
        elsif batch.any?
          send_batch(batch)
          batch = []
        end
      end
    end

    # Retries on network errors and 429/5xx; each event keeps its event_id,
    # so a retry is never stored twice.
    def send_batch(batch)
      return if batch.empty?
      delay = 0.1
      8.times do
        begin
          res = request(:post, "/v1/events", batch)
          code = res.code.to_i
          if code == 200
            answer = JSON.parse(res.body)
            stats[:sent] += answer["stored"].to_i + answer["duplicate"].to_i
            stats[:rejected] += answer["rejected"].to_i
            return
          end
          unless code == 429 || code >= 500
            stats[:failed] += batch.size
            warn "tracklake refused a batch: #{code} #{res.body}"
            return
          end
          delay = [res["Retry-After"].to_f, delay].max
        rescue SystemCallError, IOError, Timeout::Error, Net::OpenTimeout, Net::ReadTimeout
          # not reachable yet: retry
        end
        sleep(delay + rand * delay / 2)
        delay = [delay * 2, 30].min
      end
      stats[:failed] += batch.size
      warn "tracklake: gave up on #{batch.size} events"
    end
  end

  # The article's Tracker::Entity: the fields and their rules.
  class Entity
    ATTRIBUTES = %i[user_id event_type user_agent ip_address event_at event_id properties].freeze
    attr_reader(*ATTRIBUTES)

    def initialize(opts = {})
      opts.each { |k, v| instance_variable_set("@#{k}", v) if ATTRIBUTES.include?(k.to_sym) }
      @event_at ||= Time.now.utc.iso8601(6)
      @event_id ||= SecureRandom.uuid
    end

    def valid?
      !user_id.nil? && !event_type.to_s.empty?
    end

    def to_h
      ATTRIBUTES.each_with_object({}) { |a, h| h[a] = public_send(a) unless public_send(a).nil? }
    end
  end

  class Put
    # Returns at once; the event is sent in the background. Unlike the
    # article's version, event_at is honoured when given.
    def self.event(attrs = {})
      entity = Tracker::Entity.new(attrs)
      raise ArgumentError, "Tracker Entity invalid: user_id and event_type are required" unless entity.valid?
      Tracker.enqueue(entity.to_h)
      true
    end
  end

  class Get
    FIELDS = "ip_address,event_type,event_at,user_agent,device".freeze

    # The newest 50 events, newest first.
    def self.recent_activity(user_id)
      query(user_id, "limit=50&fields=#{FIELDS}")
    end

    # The newest 10 logins (all 10, however many other events came between).
    def self.logins(user_id, event_type = "login")
      query(user_id, "limit=10&type=#{URI.encode_www_form_component(event_type)}&fields=#{FIELDS}")
    end

    # Items as the article returned them: string keys, event_at parsed into
    # a DateTime, and device details (what DeviceDetector gave) under "device".
    def self.query(user_id, params)
      res = Tracker.request(:get, "/v1/users/#{URI.encode_www_form_component(user_id.to_s)}/events?#{params}")
      raise Error, "tracklake answered #{res.code}: #{res.body}" unless res.code.to_i == 200
      JSON.parse(res.body)["events"].map do |t|
        t["event_at"] = DateTime.parse(t["event_at"])
        t
      end
    end
  end
end
