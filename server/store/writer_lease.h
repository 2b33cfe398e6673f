// WriterLease: which of a jurisdiction's nodes on one PostgreSQL database is the active one.
#ifndef CASEWAY_SERVER_STORE_WRITER_LEASE_H_
#define CASEWAY_SERVER_STORE_WRITER_LEASE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "server/store/sql.h"

namespace caseway::server {

// The exit status of a node that lost the writer lease (it restarts as a standby).
inline constexpr int kLeaseLostExitCode = 76;

// LeaseOptions configure WriterLease.
struct LeaseOptions {
  std::string dsn;     // the store's PostgreSQL database
  std::string holder;  // this process: unique per start (host, pid and random bytes)
  // How long the lease lasts without a renewal: the active node renews it every ttl/3, and a
  // standby takes over at most `ttl` + `poll` after the active one stopped renewing.
  absl::Duration ttl = absl::Seconds(6);
  absl::Duration poll = absl::Seconds(1);  // how often a standby tries to take the lease
};

// WriterLease is the lease one row of table writer_lease grants, in the database the nodes share:
// (holder, epoch, expires_at), expiry judged by the database's clock only, so the two machines'
// clocks never matter. Taking a lease that has expired raises its epoch.
//
// Fencing: the store runs Fence first in every write transaction. It holds a share lock on the
// lease row until that transaction ends, so no other node can take the lease between the check
// and the commit; a node whose lease was taken (it paused, or lost its connection and the lease
// expired) fails the check and can never commit again. The channel sequences and the Merkle log
// so stay single-writer.
//
// Concurrency: thread-safe. Lifetime: the destructor stops renewing and, when it still holds the
// lease, ends it at once, so that a standby takes over at its next try instead of after `ttl`.
class WriterLease {
 public:
  // Wait is what a waiting standby is told at each try.
  struct Wait {
    std::string holder;       // the node holding the lease; empty when `error` is set
    double seconds_left = 0;  // until its lease runs out unless renewed
    absl::Status error;       // why the database could not be asked (unreachable, say)
  };

  // Acquire returns once this process holds the lease. While another holds it, or the database
  // cannot be asked, it calls `waiting` and then `wait(poll)`, which returns false to give up
  // (CANCELLED). A try never blocks on the lease row for longer than `poll` (lock_timeout): a
  // holder frozen inside a write transaction keeps the row locked until the server ends its
  // session (idle_in_transaction_session_timeout, StoreOptions).
  static absl::StatusOr<std::unique_ptr<WriterLease>> Acquire(
      const LeaseOptions& options, const std::function<void(const Wait&)>& waiting,
      const std::function<bool(absl::Duration)>& wait);
  ~WriterLease();

  int64_t epoch() const { return epoch_; }
  const std::string& holder() const { return options_.holder; }
  absl::Duration ttl() const { return options_.ttl; }

  // Expired is true once `ttl` has passed since the last renewal this process asked for (or
  // since it took the lease): another node may hold it by now.
  bool Expired() const;

  // KeepRenewed renews the lease every ttl/3 on its own thread. When it is lost (taken, or not
  // renewed within ttl: the database unreachable, or a call to it that does not return, which a
  // watchdog thread of its own notices), `lost` runs once with the reason; the node then stops
  // (fencing has already stopped its writes).
  void KeepRenewed(std::function<void(const std::string& reason)> lost);

  // Fence checks, inside a write transaction on `db`, that (holder, epoch) still holds the
  // lease, and keeps the lease row share-locked until the transaction ends. FAILED_PRECONDITION
  // naming the node that holds it now when not.
  static absl::Status Fence(Db* db, const std::string& holder, int64_t epoch);

  // CreateTable makes table writer_lease if it is missing (safe when two nodes start at once).
  static absl::Status CreateTable(Db* db);

 private:
  WriterLease(LeaseOptions options, std::unique_ptr<Db> db, int64_t epoch);
  // Taken makes the lease Acquire took on `db`.
  static std::unique_ptr<WriterLease> Taken(const LeaseOptions& options, std::unique_ptr<Db> db,
                                            int64_t epoch);
  void RenewLoop();
  void WatchLoop();
  absl::Status Renew();
  void Lost(const std::string& reason);  // runs lost_ once
  static int64_t SteadyNanos();

  const LeaseOptions options_;
  const int64_t epoch_;
  absl::Mutex mu_;
  std::unique_ptr<Db> db_ ABSL_GUARDED_BY(mu_);  // reconnected after an error
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::function<void(const std::string&)> lost_;
  std::atomic<bool> lost_called_{false};
  std::atomic<int64_t> last_renewed_ns_{0};  // steady clock, when the last good renewal was asked
  absl::Mutex watch_mu_;
  bool watch_stop_ ABSL_GUARDED_BY(watch_mu_) = false;
  std::thread renewer_;
  std::thread watchdog_;
};

// LeaseHolderName is a holder name for this process: "host/pid/random".
std::string LeaseHolderName();

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_WRITER_LEASE_H_
