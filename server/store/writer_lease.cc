#include "server/store/writer_lease.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/digest.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/thread_name.h"
#include "server/store/postgres.h"

namespace caseway::server {
namespace {

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

std::string HostName() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return host;
}

// DeadOnThisHost is true when `holder` (LeaseHolderName: "host/pid/random") names a process of
// this host that no longer exists: a node restarted after a crash need not wait out the lease of
// its own dead predecessor. (Were the guess wrong, e.g. the same host name in another PID
// namespace, the fence would still stop the other process at its next write.)
bool DeadOnThisHost(const std::string& holder) {
  std::vector<std::string> parts = absl::StrSplit(holder, '/');
  int pid = 0;
  if (parts.size() != 3 || parts[0] != HostName() || !absl::SimpleAtoi(parts[1], &pid) ||
      pid <= 0 || pid == getpid()) {
    return false;
  }
  return kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

std::string LeaseHolderName() {
  unsigned char random[4] = {0};
  RAND_bytes(random, sizeof random);
  return absl::StrCat(HostName(), "/", getpid(), "/",
                      common::ToHex(absl::string_view(reinterpret_cast<char*>(random), 4)));
}

absl::Status WriterLease::CreateTable(Db* db) {
  // An advisory lock serializes two nodes creating the table at the same moment (CREATE TABLE IF
  // NOT EXISTS alone can then fail on the catalog's unique index).
  return db->Exec(
      "BEGIN; SELECT pg_advisory_xact_lock(4675096011);"
      "CREATE TABLE IF NOT EXISTS writer_lease(name TEXT PRIMARY KEY, holder TEXT NOT NULL, "
      "epoch BIGINT NOT NULL, expires_at TIMESTAMPTZ NOT NULL); COMMIT;");
}

absl::StatusOr<std::unique_ptr<WriterLease>> WriterLease::Acquire(
    const LeaseOptions& options, const std::function<void(const Wait&)>& waiting,
    const std::function<bool(absl::Duration)>& wait) {
  std::unique_ptr<Db> db;
  PgSession session;
  session.lock_timeout = std::max(options.poll, absl::Milliseconds(100));
  for (;;) {
    Wait told;
    absl::Status& last_error = told.error;  // why the database could not be asked, this try
    if (db == nullptr) {
      auto connected = PgDb::Connect(options.dsn, session);
      if (connected.ok()) {
        db = std::move(*connected);
        if (absl::Status s = CreateTable(db.get()); !s.ok()) {
          last_error = s;
          db.reset();
        }
      } else {
        last_error = connected.status();
      }
    }
    if (db != nullptr) {
      Stmt take(db.get(),
                "INSERT INTO writer_lease(name, holder, epoch, expires_at) "
                "VALUES('writer', ?, 1, clock_timestamp() + CAST(? AS BIGINT) * "
                "interval '1 microsecond') "
                "ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, "
                "epoch = writer_lease.epoch + 1, expires_at = excluded.expires_at "
                "WHERE writer_lease.expires_at < clock_timestamp() RETURNING epoch");
      take.Bind(1, options.holder).Bind(2, Micros(options.ttl));
      int64_t epoch = 0;
      if (take.Step()) epoch = take.Int(0);
      absl::Status s = take.status("take the writer lease");
      take.Reset();
      if (s.ok() && epoch > 0) return Taken(options, std::move(db), epoch);
      // ABORTED: the holder is inside a write transaction (the row is share-locked) for longer
      // than lock_timeout: the lease is held.
      if (s.ok() || s.code() == absl::StatusCode::kAborted) {
        Stmt who(db.get(),
                 "SELECT holder, extract(epoch FROM expires_at - clock_timestamp()) "
                 "FROM writer_lease WHERE name = 'writer'");
        std::string holder;
        double left = 0;
        if (who.Step()) {
          holder = who.Text(0);
          if (!absl::SimpleAtod(who.Text(1), &left)) left = 0;
        }
        last_error = who.status("look up the writer lease");
        who.Reset();
        if (!holder.empty() && DeadOnThisHost(holder)) {
          Stmt reclaim(db.get(),
                       "UPDATE writer_lease SET holder = ?, epoch = epoch + 1, "
                       "expires_at = clock_timestamp() + CAST(? AS BIGINT) * "
                       "interval '1 microsecond' WHERE name = 'writer' AND holder = ? "
                       "RETURNING epoch");
          reclaim.Bind(1, options.holder).Bind(2, Micros(options.ttl)).Bind(3, holder);
          auto reclaimed = Returned(reclaim, "take the lease of a dead process");
          if (reclaimed.ok()) return Taken(options, std::move(db), *reclaimed);
          // Otherwise it moved meanwhile: wait and look again.
        }
        told.holder = holder;
        told.seconds_left = left;
      } else {
        last_error = s;
      }
      if (!last_error.ok() && db->Broken()) db.reset();
    }
    if (!told.error.ok()) told = Wait{"", 0, told.error};  // nothing it said of a holder counts
    if (waiting && (!told.holder.empty() || !told.error.ok())) waiting(told);
    if (!wait(options.poll)) return absl::CancelledError("gave up waiting for the writer lease");
  }
}

std::unique_ptr<WriterLease> WriterLease::Taken(const LeaseOptions& options,
                                                std::unique_ptr<Db> db, int64_t epoch) {
  // The holder's renewals wait for its own write transactions' share locks, however long. (If
  // this fails the connection is dropped: the first renewal connects again.)
  if (!db->Exec("RESET lock_timeout").ok()) db.reset();
  return std::unique_ptr<WriterLease>(new WriterLease(options, std::move(db), epoch));
}

WriterLease::WriterLease(LeaseOptions options, std::unique_ptr<Db> db, int64_t epoch)
    : options_(std::move(options)),
      epoch_(epoch),
      db_(std::move(db)),
      last_renewed_ns_(SteadyNanos()) {}

bool WriterLease::Expired() const {
  return SteadyNanos() - last_renewed_ns_.load() >= absl::ToInt64Nanoseconds(options_.ttl);
}

WriterLease::~WriterLease() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  {
    absl::MutexLock lock(&watch_mu_);
    watch_stop_ = true;
  }
  if (renewer_.joinable()) renewer_.join();
  if (watchdog_.joinable()) watchdog_.join();
  absl::MutexLock lock(&mu_);
  if (db_ == nullptr || lost_called_) return;
  // Ends the lease now (only if still ours): a standby takes over at its next try.
  Stmt end(db_.get(),
           "UPDATE writer_lease SET expires_at = clock_timestamp() "
           "WHERE name = 'writer' AND holder = ? AND epoch = ?");
  end.Bind(1, options_.holder).Bind(2, epoch_);
  Done(end, "end the writer lease").IgnoreError();
}

absl::Status WriterLease::Fence(Db* db, const std::string& holder, int64_t epoch) {
  Stmt& s = db->Prepared(
      "SELECT holder, epoch, expires_at > clock_timestamp() FROM writer_lease "
      "WHERE name = 'writer' FOR SHARE");
  std::string now_holder;
  int64_t now_epoch = 0;
  bool valid = false;
  if (s.Step()) {
    now_holder = s.Text(0);
    now_epoch = s.Int(1);
    valid = s.Int(2) != 0;
  }
  absl::Status st = s.status("check the writer lease");
  s.Reset();
  RETURN_IF_ERROR(st);
  if (now_holder == holder && now_epoch == epoch && valid) return absl::OkStatus();
  if (now_holder == holder && now_epoch == epoch) {
    return absl::FailedPreconditionError(
        "the writer lease expired before it was renewed: this node may no longer write");
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the writer lease was taken by ", now_holder.empty() ? "nobody" : now_holder, " (epoch ",
      now_epoch, "; this node had ", epoch, "): this node may no longer write"));
}

void WriterLease::KeepRenewed(std::function<void(const std::string&)> lost) {
  lost_ = std::move(lost);
  renewer_ = std::thread([this] { RenewLoop(); });
  watchdog_ = std::thread([this] { WatchLoop(); });
}

int64_t WriterLease::SteadyNanos() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void WriterLease::Lost(const std::string& reason) {
  if (lost_called_.exchange(true)) return;
  lost_(reason);
}

// WatchLoop judges the lease by the time of the last renewal alone, whatever the renewing thread
// is doing: a call that never returns (a connection that went silent without closing) must not
// keep a node writing past its lease.
void WriterLease::WatchLoop() {
  common::NameThisThread("cw-lease-watch");
  absl::MutexLock lock(&watch_mu_);
  while (!watch_stop_) {
    watch_mu_.AwaitWithTimeout(absl::Condition(&watch_stop_), options_.ttl / 10);
    if (watch_stop_) return;
    if (Expired()) {
      watch_mu_.Unlock();
      Lost(absl::StrCat("not renewed within ", absl::FormatDuration(options_.ttl)));
      watch_mu_.Lock();
      return;
    }
  }
}

absl::Status WriterLease::Renew() {
  if (db_ == nullptr) {
    ASSIGN_OR_RETURN(auto connected, PgDb::Connect(options_.dsn));
    db_ = std::move(connected);
  }
  Stmt& s = db_->Prepared(
      "UPDATE writer_lease SET expires_at = clock_timestamp() + CAST(? AS BIGINT) * "
      "interval '1 microsecond' "
      "WHERE name = 'writer' AND holder = ? AND epoch = ? AND expires_at > clock_timestamp()");
  s.Bind(1, Micros(options_.ttl)).Bind(2, options_.holder).Bind(3, epoch_);
  absl::Status st = Done(s, "renew the writer lease");
  if (!st.ok()) {
    if (db_->Broken()) db_.reset();
    return st;
  }
  if (db_->Changes() == 0) {
    return absl::FailedPreconditionError("the writer lease was taken or had expired");
  }
  return absl::OkStatus();
}

void WriterLease::RenewLoop() {
  common::NameThisThread("cw-lease-renew");
  absl::MutexLock lock(&mu_);
  while (!stopping_ && !lost_called_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.ttl / 3);
    if (stopping_) return;
    // The time is taken before the call: the database's expiry counts from a moment after it.
    const int64_t asked = SteadyNanos();
    absl::Status s = Renew();
    if (s.ok()) {
      last_renewed_ns_ = asked;
      continue;
    }
    common::Log(common::LogLevel::kWarn, "writer lease not renewed (retried)",
                {{"status", s.ToString()}});
    if (s.code() == absl::StatusCode::kFailedPrecondition) {
      db_.reset();  // the lease is not ours: the destructor must not end it
      mu_.Unlock();
      Lost(std::string(s.message()));
      mu_.Lock();
      return;
    }
    // Otherwise (the database unreachable) the watchdog decides, by the time since last_renewed.
  }
}

}  // namespace caseway::server
