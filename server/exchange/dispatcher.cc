#include "server/exchange/dispatcher.h"

#include "common/thread_name.h"

namespace caseway::server {

Dispatcher::Dispatcher(int threads, std::string name) {
  for (int i = 0; i < threads; ++i) {
    workers_.emplace_back([this, name] {
      common::NameThisThread(name);
      Work();
    });
  }
}

Dispatcher::~Dispatcher() { Stop(); }

void Dispatcher::Schedule(std::shared_ptr<Steppable> machine) {
  absl::MutexLock lock(&mu_);
  if (stopping_) return;
  if (machine->running_) {
    machine->again_ = true;
  } else if (!machine->queued_) {
    machine->queued_ = true;
    queue_.push_back(std::move(machine));
  }
}

void Dispatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  for (auto& t : workers_) t.join();
  absl::MutexLock lock(&mu_);
  for (auto& m : queue_) m->queued_ = false;
  queue_.clear();
}

void Dispatcher::Work() {
  absl::MutexLock lock(&mu_);
  while (true) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return stopping_ || !queue_.empty();
    };
    mu_.Await(absl::Condition(&ready));
    if (stopping_) return;
    std::shared_ptr<Steppable> machine = std::move(queue_.front());
    queue_.pop_front();
    machine->queued_ = false;
    machine->running_ = true;
    mu_.Unlock();
    machine->Step();
    mu_.Lock();
    machine->running_ = false;
    if (machine->again_) {
      machine->again_ = false;
      machine->queued_ = true;
      queue_.push_back(std::move(machine));
    }
  }
}

}  // namespace caseway::server
