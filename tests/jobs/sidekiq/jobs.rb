# Job classes for the real `sidekiq` process the queue_sidekiq tests run
# (`sidekiq -r tests/jobs/sidekiq/jobs.rb`). Redis comes from REDIS_URL, which Sidekiq reads itself.
require "sidekiq"
# redis-rb 4.8 warns about a return type Sidekiq 6.4 does not use.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

# A job that takes a few milliseconds, so a queue drains quickly but visibly.
class CanaryJob
  include Sidekiq::Worker
  sidekiq_options retry: false

  def perform(_n)
    sleep 0.01
  end
end

# A job that runs until the test deletes the `canary:hold` key (at most 30 s), so the test can
# see a busy worker thread in the next process heartbeat.
class HoldJob
  include Sidekiq::Worker
  sidekiq_options retry: false

  def perform
    deadline = Time.now + 30
    sleep 0.05 while Time.now < deadline && Sidekiq.redis { |c| c.exists?("canary:hold") }
  end
end

# The canary class canaryd's docs give: a no-op. canaryd writes `"retry":0` into the job itself,
# so a canary that raises goes straight to the dead set where canaryd sees it.
class CanarydCanaryJob
  include Sidekiq::Worker
  def perform(*); end
end

# A canary class that raises, for the canary_sidekiq test of a failing job.
class CanarydFailingJob
  include Sidekiq::Worker
  def perform(*)
    raise "canary boom"
  end
end

# A canary class that runs across a process heartbeat (every 5 s), so the worker's work hash
# shows it running, for the canary_sidekiq test of the recorded start time.
class CanarydSlowJob
  include Sidekiq::Worker
  def perform(*)
    sleep 6
  end
end
