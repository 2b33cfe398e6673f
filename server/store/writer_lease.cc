#include "server/store/writer_lease.h"

#include <openssl/rand.h>
#include <unistd.h>

#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/digest.h"
#include "common/status_macros.h"
#include "server/store/postgres.h"

namespace caseway::server {
namespace {

int64_t Micros(absl::Duration d) { return absl::ToInt64Microseconds(d); }

}  // namespace

std::string LeaseHolderName() {
  char host[256] = {0};
  if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  unsigned char random[4] = {0};
  RAND_bytes(random, sizeof random);
  return absl::StrCat(host, "/", getpid(), "/",
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
    const LeaseOptions& options,
    const std::function<void(const std::string&, double)>& waiting,
    const std::function<bool(absl::Duration)>& wait) {
  std::unique_ptr<Db> db;
  absl::Status last_error;
  for (;;) {
    if (db == nullptr) {
      auto connected = PgDb::Connect(options.dsn);
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
      if (s.ok() && epoch > 0) {
        return std::unique_ptr<WriterLease>(new WriterLease(options, std::move(db), epoch));
      }
      if (s.ok()) {
        Stmt who(db.get(),
                 "SELECT holder, extract(epoch FROM expires_at - clock_timestamp()) "
                 "FROM writer_lease WHERE name = 'writer'");
        if (who.Step() && waiting) {
          double left = 0;
          if (!absl::SimpleAtod(who.Text(1), &left)) left = 0;
          waiting(who.Text(0), left);
        }
      } else {
        last_error = s;
        if (!static_cast<PgDb*>(db.get())->Connected()) db.reset();
      }
    }
    if (!last_error.ok() && waiting) waiting(absl::StrCat("(unknown: ", last_error.message(), ")"), 0);
    last_error = absl::OkStatus();
    if (!wait(options.poll)) return absl::CancelledError("gave up waiting for the writer lease");
  }
}

WriterLease::WriterLease(LeaseOptions options, std::unique_ptr<Db> db, int64_t epoch)
    : options_(std::move(options)), epoch_(epoch), db_(std::move(db)) {}

WriterLease::~WriterLease() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (renewer_.joinable()) renewer_.join();
  absl::MutexLock lock(&mu_);
  if (db_ == nullptr) return;
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
    if (!static_cast<PgDb*>(db_.get())->Connected()) db_.reset();
    return st;
  }
  if (db_->Changes() == 0) {
    return absl::FailedPreconditionError("the writer lease was taken or had expired");
  }
  return absl::OkStatus();
}

void WriterLease::RenewLoop() {
  auto last_ok = std::chrono::steady_clock::now();
  const auto ttl = absl::ToChronoMicroseconds(options_.ttl);
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.ttl / 3);
    if (stopping_) return;
    absl::Status s = Renew();
    if (s.ok()) {
      last_ok = std::chrono::steady_clock::now();
      continue;
    }
    const bool taken = s.code() == absl::StatusCode::kFailedPrecondition;
    if (taken || std::chrono::steady_clock::now() - last_ok >= ttl) {
      db_.reset();  // the lease is not ours: the destructor must not end it
      std::string reason = taken ? std::string(s.message())
                                 : absl::StrCat("not renewed within ", absl::FormatDuration(options_.ttl),
                                                ": ", s.message());
      mu_.Unlock();
      lost_(reason);
      mu_.Lock();
      return;
    }
  }
}

}  // namespace caseway::server
