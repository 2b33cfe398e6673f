// NoticeStore: a node's durable state in one SQLite database: published notices and their
// outbound channel entries, inbound cursors and the inbox.
#ifndef CASEWAY_SERVER_STORE_NOTICE_STORE_H_
#define CASEWAY_SERVER_STORE_NOTICE_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "caseway/v1/gateway.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "server/store/commit_queue.h"
#include "server/store/sqlite.h"

namespace caseway::server {

// PreparedNotice is a validated notice ready to store: `bytes` is its serialization with the
// origin set, stored and delivered byte for byte; `digest` is SHA-256 of `bytes`.
struct PreparedNotice {
  std::string notice_id;
  std::vector<std::string> destinations;
  std::string bytes;
  std::string digest;
  std::vector<std::string> warnings;
};

// InboxRow is one received notice in the inbox.
struct InboxRow {
  uint64_t inbox_seq = 0;
  std::string origin;
  uint64_t channel_seq = 0;
  absl::Time received_at;
  std::string bytes;
};

// ChannelState is an outbound channel's positions.
struct ChannelState {
  uint64_t head = 0;
  uint64_t acked = 0;
};

// NoticeStore is the node's storage.
//
// Operation: writes go through one CommitQueue (group commit, WAL, synchronous=FULL); a method
// that writes returns only after its transaction is durable. Reads use a pool of read-only
// connections and see only committed data. Channel heads are mirrored in memory after each
// commit; Wait() blocks until the next commit that changes anything.
// Concurrency: thread-safe.
// Limitations: one process per database file (SQLite's locking guards against a second writer,
// which gets INTERNAL "database is locked" after 10 s).
class NoticeStore {
 public:
  // Open creates or migrates the schema at `path`. INTERNAL on SQLite errors, FAILED_PRECONDITION
  // when the file has a newer schema version than this binary knows.
  static absl::StatusOr<std::unique_ptr<NoticeStore>> Open(const std::string& path,
                                                           int group_commit_max);
  ~NoticeStore();

  // Publish stores every notice and its channel entries in one transaction, returning one result
  // per notice in order. Identical republished content returns the original result with
  // duplicate = true. ALREADY_EXISTS "notices[i]: ..." when an id is taken by different content;
  // then nothing of the call is stored.
  absl::StatusOr<std::vector<caseway::v1::PublishResult>> Publish(
      const std::vector<PreparedNotice>& notices);

  // ReadChannel returns committed entries of the channel to `destination` from `from_seq`, at
  // most `max_entries` and about `max_bytes` (always at least one when available).
  absl::StatusOr<std::vector<caseway::v1::Entry>> ReadChannel(const std::string& destination,
                                                              uint64_t from_seq,
                                                              uint32_t max_entries,
                                                              uint64_t max_bytes);
  ChannelState Channel(const std::string& destination);
  std::map<std::string, ChannelState> Channels();

  // RecordAck durably raises the acknowledged position of a channel (never lowers it).
  absl::Status RecordAck(const std::string& destination, uint64_t seq);

  // Cursor is the highest sequence stored from `origin` (0 when none).
  absl::StatusOr<uint64_t> Cursor(const std::string& origin);

  // StoreReceived commits a batch from `origin` into the inbox and advances the cursor, in one
  // transaction. FAILED_PRECONDITION when the batch does not start at cursor+1 or is not
  // contiguous; INVALID_ARGUMENT when an entry is not a parsable Notice. Nothing is stored then.
  absl::Status StoreReceived(const std::string& origin, const caseway::v1::Batch& batch);

  // ReadInbox returns unacknowledged inbox rows with inbox_seq > after, oldest first.
  absl::StatusOr<std::vector<InboxRow>> ReadInbox(uint64_t after, uint32_t limit);

  // AckInbox marks rows consumed. NOT_FOUND naming the first inbox_seq that does not exist.
  absl::Status AckInbox(const std::vector<uint64_t>& inbox_seqs);

  // InboxCounts returns (total, unacknowledged).
  absl::StatusOr<std::pair<uint64_t, uint64_t>> InboxCounts();

  // Version increases with every commit; Wait blocks until it exceeds `seen` or `deadline`.
  uint64_t Version();
  uint64_t Wait(uint64_t seen, absl::Time deadline);

 private:
  struct WriterStatements;
  NoticeStore(std::string path, std::unique_ptr<WriterStatements> stmts);
  absl::StatusOr<std::unique_ptr<Db>> AcquireReader();
  void ReleaseReader(std::unique_ptr<Db> db);
  void Committed(const std::map<std::string, ChannelState>& changes);

  const std::string path_;
  std::unique_ptr<WriterStatements> stmts_;  // outlives queue_: used by its thread
  std::unique_ptr<CommitQueue> queue_;

  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<Db>> readers_ ABSL_GUARDED_BY(readers_mu_);

  absl::Mutex mu_;
  std::map<std::string, ChannelState> channels_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_NOTICE_STORE_H_
