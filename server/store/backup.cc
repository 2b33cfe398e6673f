#include "server/store/backup.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/clock.h"
#include "common/status_macros.h"
#include "server/store/sqlite.h"

namespace caseway::server {
namespace {

absl::Status SyncPath(const std::string& path, bool directory) {
  int fd = open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, " to sync it"));
  const bool ok = fsync(fd) == 0;
  close(fd);
  return ok ? absl::OkStatus() : absl::DataLossError(absl::StrCat("fsync ", path));
}

}  // namespace

absl::StatusOr<BackupSummary> BackupDatabase(const std::string& db_path, const std::string& out) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(out, ec)) {
    return absl::AlreadyExistsError(absl::StrCat("--to: ", out, " exists (a backup never overwrites)"));
  }
  if (!fs::exists(db_path, ec)) {
    return absl::NotFoundError(absl::StrCat("storage.path: ", db_path, " does not exist"));
  }
  const std::string partial = out + ".partial";
  fs::remove(partial, ec);
  BackupSummary summary;
  {
    // Read-only: the copy is one read transaction of the live database, which the node's writer
    // does not wait for (WAL).
    sqlite3* raw = nullptr;
    int rc = sqlite3_open_v2(db_path.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> src(raw, sqlite3_close);
    if (rc != SQLITE_OK) return SqliteError(raw, absl::StrCat("open ", db_path));
    sqlite3_busy_timeout(raw, 10000);
    const std::string sql =
        absl::StrCat("VACUUM INTO '", absl::StrReplaceAll(partial, {{"'", "''"}}), "'");
    char* err = nullptr;
    rc = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string message = err != nullptr ? err : "unknown error";
      sqlite3_free(err);
      fs::remove(partial, ec);
      return absl::InternalError(absl::StrCat("copy ", db_path, ": ", message));
    }
  }
  {
    ASSIGN_OR_RETURN(std::unique_ptr<Db> copy, SqliteDb::Open(partial));
    summary.taken_at = common::Now();
    Stmt mark(copy.get(),
              "INSERT INTO meta(key, value) VALUES('backup_taken_at', ?)"
              " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    mark.Bind(1, absl::StrCat(absl::ToUnixMicros(summary.taken_at)));
    mark.Step();
    RETURN_IF_ERROR(mark.status("mark the backup"));
    // A restored copy is checked again from the start.
    // Departments' feed positions count in the live file, not in this copy (it gets its own
    // epoch when it is opened).
    RETURN_IF_ERROR(copy->Exec("DELETE FROM meta WHERE key IN ('restore_checked', "
                               "'restore_unconfirmed', 'feed_epoch'); "
                               "PRAGMA wal_checkpoint(TRUNCATE);"));
    {
      Stmt s(copy.get(), "SELECT count(*) FROM log_leaf");
      if (s.Step()) summary.log_size = s.Int(0);
      RETURN_IF_ERROR(s.status("read the log size"));
    }
    {
      Stmt s(copy.get(), "SELECT destination, head FROM channel");
      while (s.Step()) summary.channel_heads[s.Text(0)] = s.Int(1);
      RETURN_IF_ERROR(s.status("read channels"));
    }
    Stmt s(copy.get(), "SELECT origin, seq FROM cursor");
    while (s.Step()) summary.cursors[s.Text(0)] = s.Int(1);
    RETURN_IF_ERROR(s.status("read cursors"));
  }
  // The copy is one file: the WAL was checkpointed into it and is removed with the journal mode.
  {
    sqlite3* raw = nullptr;
    sqlite3_open_v2(partial.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
    std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, sqlite3_close);
    char* err = nullptr;
    if (sqlite3_exec(raw, "PRAGMA journal_mode=DELETE;", nullptr, nullptr, &err) != SQLITE_OK) {
      std::string message = err != nullptr ? err : "unknown error";
      sqlite3_free(err);
      return absl::InternalError(absl::StrCat("finish ", partial, ": ", message));
    }
  }
  chmod(partial.c_str(), 0600);
  RETURN_IF_ERROR(SyncPath(partial, false));
  // link() never replaces: a file that appeared at `out` meanwhile is kept.
  if (link(partial.c_str(), out.c_str()) != 0) {
    const bool exists = errno == EEXIST;
    fs::remove(partial, ec);
    return exists ? absl::AlreadyExistsError(absl::StrCat("--to: ", out, " exists (a backup never overwrites)"))
                  : absl::InternalError(absl::StrCat("link ", partial, " to ", out));
  }
  fs::remove(partial, ec);
  const fs::path parent = fs::absolute(out).parent_path();
  RETURN_IF_ERROR(SyncPath(parent.string(), true));
  summary.bytes = fs::file_size(out, ec);
  return summary;
}

bool DatabaseInUse(const std::string& db_path) {
  const std::string shm = db_path + "-shm";
  int fd = open(shm.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno != ENOENT;
  struct flock lock = {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = 128;  // WALINDEX_LOCK_OFFSET (120) + the DMS slot (8)
  lock.l_len = 1;
  const bool held = fcntl(fd, F_GETLK, &lock) == 0 && lock.l_type != F_UNLCK;
  close(fd);
  return held;
}

namespace {

absl::Status CopyFile(const std::string& from, const std::string& to) {
  std::error_code ec;
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec) return absl::InternalError(absl::StrCat("copy ", from, " to ", to, ": ", ec.message()));
  chmod(to.c_str(), 0600);
  return SyncPath(to, false);
}

}  // namespace

absl::StatusOr<absl::Time> RestoreDatabase(const std::string& from, const std::string& db_path) {
  namespace fs = std::filesystem;
  absl::Time taken_at;
  {
    auto db = SqliteDb::OpenReadOnly(from);
    if (!db.ok()) return absl::FailedPreconditionError(absl::StrCat("--from: ", from, ": cannot be opened"));
    Stmt check(db->get(), "PRAGMA quick_check");
    if (!check.Step() || check.Text(0) != "ok") {
      return absl::FailedPreconditionError(
          absl::StrCat("--from: ", from, ": not a sound SQLite database (quick_check failed)"));
    }
    Stmt mark(db->get(), "SELECT value FROM meta WHERE key = 'backup_taken_at'");
    int64_t micros = 0;
    if (!mark.Step() || !absl::SimpleAtoi(mark.Text(0), &micros)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--from: ", from, ": not a backup made by `caseway-node backup` (no backup mark)"));
    }
    taken_at = absl::FromUnixMicros(micros);
  }
  auto in_use = [&]() -> absl::Status {
    if (!DatabaseInUse(db_path)) return absl::OkStatus();
    return absl::FailedPreconditionError(absl::StrCat(
        "storage.path: ", db_path, " is open in a running process (or its -shm file cannot be "
        "read): stop the node first"));
  };
  RETURN_IF_ERROR(in_use());
  std::error_code ec;
  const fs::path target = fs::absolute(db_path);
  fs::create_directories(target.parent_path(), ec);
  // The copy first (the step that can fail for want of space), beside the database: until it is
  // complete and synced, nothing of the current files has moved.
  const std::string partial = db_path + ".partial";
  if (absl::Status copied = CopyFile(from, partial); !copied.ok()) {
    fs::remove(partial, ec);
    return copied;
  }
  RETURN_IF_ERROR(in_use());  // a node started meanwhile keeps its database
  // Then two renames in one directory. The current files are kept, under a name no earlier
  // restore used.
  std::string stamp = absl::FormatTime("%Y%m%dT%H%M%S.%fZ", absl::Now(), absl::UTCTimeZone());
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string file = db_path + suffix;
    if (!fs::exists(file, ec)) continue;
    const std::string aside = absl::StrCat(db_path, ".replaced-", stamp, suffix);
    if (std::rename(file.c_str(), aside.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("rename ", file, " to ", aside, " (", partial,
                                              " holds the complete copy)"));
    }
  }
  if (std::rename(partial.c_str(), db_path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", partial, " to ", db_path,
                                            " (the previous database is kept as ", db_path,
                                            ".replaced-", stamp, ")"));
  }
  RETURN_IF_ERROR(SyncPath(target.parent_path().string(), true));
  return taken_at;
}

}  // namespace caseway::server
