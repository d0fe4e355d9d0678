# Enqueues jobs with Sidekiq's own client: `ruby enqueue.rb CLASS COUNT QUEUE [QUEUE...]` pushes
# COUNT jobs of CLASS (no arguments for HoldJob, the job number otherwise) to each QUEUE.
# Redis comes from REDIS_URL, which Sidekiq reads itself.
require "sidekiq"
# redis-rb 4.8 warns about a return type Sidekiq 6.4 does not use.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

klass, count, *queues = ARGV
abort "usage: enqueue.rb CLASS COUNT QUEUE [QUEUE...]" if klass.nil? || count.nil? || queues.empty?

queues.each do |queue|
  Integer(count).times do |n|
    args = klass == "HoldJob" ? [] : [n]
    Sidekiq::Client.push("queue" => queue, "class" => klass, "args" => args)
  end
end
