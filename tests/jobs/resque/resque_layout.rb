# Resque's Redis layout, written exactly as Resque's own code writes it, for the queue_resque
# tests. There is no Resque package on this machine (none in Debian bookworm), so this script
# replays the commands of Resque's source (repository resque/resque) with the `redis` gem:
#
#   lib/resque/data_store.rb   QueueAccess#push_to_queue, #pop_from_queue; Workers#register_worker,
#                              #heartbeat!, #set_worker_payload, #worker_done_working,
#                              #unregister_worker; StatsAccess#increment_stat, #clear_stat
#   lib/resque/worker.rb       #startup, #work, #work_one_job, #working_on, #done_working,
#                              #processed!, #failed!, #report_failed_job, #unregister_worker, #to_s
#   lib/resque/failure/redis.rb  Failure::Redis#save (the `failed` list)
#   lib/resque.rb              the `resque` namespace (redis-namespace prefixes every key)
#
# Usage (REDIS_URL and optionally RESQUE_NAMESPACE in the environment):
#   ruby resque_layout.rb enqueue QUEUES COUNT [CLASS]   Resque.enqueue_to(queue, CLASS, n) COUNT
#       times for each of QUEUES (comma-separated)
#   ruby resque_layout.rb enqueue-active-job QUEUE COUNT  the same through Active Job's ResqueAdapter
#   ruby resque_layout.rb work QUEUES INTERVAL HEARTBEAT  a worker on QUEUES (comma-separated),
#       polling every INTERVAL s when idle (Resque's INTERVAL) and sending a heartbeat every
#       HEARTBEAT s (Resque.heartbeat_interval). TERM or INT: finish the current job, unregister.
#
# Job classes the worker knows: CanaryJob (10 ms), FailJob (raises), HoldJob (runs while the key
# `canary:hold` exists, at most 30 s).
require "json"
require "redis"
require "socket"
require "time"

NS = ENV.fetch("RESQUE_NAMESPACE", "resque")

# redis-namespace's layout: "<namespace>:<key>".
def k(key)
  "#{NS}:#{key}"
end

def connect
  Redis.new(url: ENV.fetch("REDIS_URL"))
end

# Resque.push -> DataStore::QueueAccess#push_to_queue: SADD queues + RPUSH queue:<q>, pipelined.
def push(redis, queue, item)
  redis.pipelined do |piped|
    piped.sadd(k("queues"), [queue.to_s])
    piped.rpush(k("queue:#{queue}"), JSON.generate(item))
  end
end

def enqueue(queues, count, klass)
  redis = connect
  # Job.create: Resque.push(queue, 'class' => klass.to_s, 'args' => args)
  queues.each do |queue|
    count.times { |n| push(redis, queue, "class" => klass, "args" => [n]) }
  end
end

# ActiveJob::QueueAdapters::ResqueAdapter#enqueue: Resque.enqueue_to(queue, JobWrapper,
# job.serialize); ActiveJob::Core#serialize stamps "enqueued_at" => Time.now.utc.iso8601(9).
def enqueue_active_job(queue, count)
  redis = connect
  count.times do |n|
    data = {
      "job_class" => "CanaryMailJob", "job_id" => "job-#{n}", "provider_job_id" => nil,
      "queue_name" => queue, "priority" => nil, "arguments" => [n], "executions" => 0,
      "exception_executions" => {}, "locale" => "en", "timezone" => "UTC",
      "enqueued_at" => Time.now.utc.iso8601(9), "scheduled_at" => nil
    }
    push(redis, queue, "class" => "ActiveJob::QueueAdapters::ResqueAdapter::JobWrapper",
                       "args" => [data])
  end
end

class Worker
  def initialize(queues, interval, heartbeat)
    @queues = queues
    @interval = interval
    @heartbeat = heartbeat
    @redis = connect
    @shutdown = false
    # Worker#to_s: "#{hostname}:#{pid}:#{@queues.join(',')}"
    @id = "#{Socket.gethostname}:#{Process.pid}:#{@queues.join(',')}"
  end

  def work
    %w[TERM INT QUIT].each { |sig| trap(sig) { @shutdown = true } }
    startup
    until @shutdown
      job = reserve
      if job
        work_one_job(*job)
      else
        sleep @interval
      end
    end
  ensure
    unregister_worker
  end

  private

  # Worker#startup: start_heartbeat, then register_worker.
  def startup
    @redis.hdel(k("workers:heartbeat"), @id) # remove_heartbeat
    beat_redis = connect
    @beat_thread = Thread.new do
      loop do
        # Worker#heartbeat!(data_store.server_time) -> HSET workers:heartbeat id time.iso8601
        secs, = beat_redis.time
        beat_redis.hset(k("workers:heartbeat"), @id, Time.at(secs).iso8601)
        sleep @heartbeat
      end
    end
    # Workers#register_worker: SADD workers + SET worker:<id>:started, pipelined.
    @redis.pipelined do |piped|
      piped.sadd(k("workers"), [@id])
      piped.set(k("worker:#{@id}:started"), Time.now.to_s)
    end
    $stdout.puts "worker #{@id} registered"
    $stdout.flush
  end

  # Worker#reserve -> Job.reserve -> QueueAccess#pop_from_queue: LPOP queue:<q>.
  def reserve
    @queues.each do |queue|
      payload = @redis.lpop(k("queue:#{queue}"))
      return [queue, JSON.parse(payload)] if payload
    end
    nil
  end

  def work_one_job(queue, payload)
    # Worker#working_on: SET worker:<id> {queue, run_at, payload}
    @redis.set(k("worker:#{@id}"),
               JSON.generate("queue" => queue, "run_at" => Time.now.utc.iso8601, "payload" => payload))
    begin
      perform(payload)
    rescue StandardError => e
      report_failed_job(queue, payload, e)
    end
    # Worker#done_working -> Workers#worker_done_working: DEL worker:<id>, then processed!
    # (INCRBY stat:processed, INCRBY stat:processed:<id>), pipelined.
    @redis.pipelined do |piped|
      piped.del(k("worker:#{@id}"))
      piped.incrby(k("stat:processed"), 1)
      piped.incrby(k("stat:processed:#{@id}"), 1)
    end
  end

  def perform(payload)
    case payload["class"]
    when "FailJob"
      raise "canary failure"
    when "HoldJob"
      deadline = Time.now + 30
      sleep 0.05 while Time.now < deadline && @redis.exists?("canary:hold")
    else
      sleep 0.01
    end
  end

  # Worker#report_failed_job: job.fail -> Failure::Redis#save (RPUSH failed), then failed!
  # (INCRBY stat:failed, INCRBY stat:failed:<id>).
  def report_failed_job(queue, payload, exception)
    failure = {
      "failed_at" => Time.now.rfc2822, "payload" => payload,
      "exception" => exception.class.to_s, "error" => exception.to_s,
      "backtrace" => [], "worker" => @id, "queue" => queue
    }
    @redis.rpush(k("failed"), JSON.generate(failure))
    @redis.incrby(k("stat:failed"), 1)
    @redis.incrby(k("stat:failed:#{@id}"), 1)
  end

  # Worker#unregister_worker -> Workers#unregister_worker: SREM workers, DEL worker:<id>,
  # DEL worker:<id>:started, HDEL workers:heartbeat, and Stat.clear of the per-worker stats.
  def unregister_worker
    @beat_thread&.kill
    @redis.pipelined do |piped|
      piped.srem(k("workers"), [@id])
      piped.del(k("worker:#{@id}"))
      piped.del(k("worker:#{@id}:started"))
      piped.hdel(k("workers:heartbeat"), @id)
      piped.del(k("stat:processed:#{@id}"))
      piped.del(k("stat:failed:#{@id}"))
    end
  end
end

cmd, *args = ARGV
case cmd
when "enqueue"
  queues, count, klass = args
  enqueue(queues.split(","), Integer(count), klass || "CanaryJob")
when "enqueue-active-job"
  queue, count = args
  enqueue_active_job(queue, Integer(count))
when "work"
  queues, interval, heartbeat = args
  Worker.new(queues.split(","), Float(interval || "0.1"), Float(heartbeat || "60")).work
else
  abort "usage: resque_layout.rb enqueue QUEUES COUNT [CLASS] | enqueue-active-job QUEUE COUNT | " \
        "work QUEUES [INTERVAL] [HEARTBEAT]"
end
