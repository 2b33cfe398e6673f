// InboxStore: the destination side of the store, as the subscriber (server/exchange/) and the
// consumers' Inbox stream (server/gateway/) use it.
#ifndef CASEWAY_SERVER_STORE_INBOX_STORE_H_
#define CASEWAY_SERVER_STORE_INBOX_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "common/validation.h"
#include "server/store/signer.h"

namespace caseway::server {

// InboxRow is one received notice in the inbox.
struct InboxRow {
  uint64_t inbox_seq = 0;
  std::string origin;
  uint64_t channel_seq = 0;
  absl::Time received_at;
  std::string bytes;
};

// InboxStore holds what this node received: per origin, the highest sequence stored (the
// cursor) and the receipts it signed; and the inbox its consumers take notices from, in
// inbox_seq order, acknowledging them. Implemented by NoticeStore, on SQLite and PostgreSQL.
// Thread-safe.
class InboxStore {
 public:
  using WriteDone = std::function<void(const absl::Status&)>;
  virtual ~InboxStore() = default;

  // --- From the origins (the subscriber) ---

  // Cursor is the highest sequence stored from `origin` (0 when none).
  virtual absl::StatusOr<uint64_t> Cursor(const std::string& origin) = 0;
  // StoreReceived commits a checked batch (its entries are its origin's notices addressed here)
  // into the inbox and advances the cursor, in one transaction; with the exchange log on it
  // also stores the (already verified) signed manifest, appends a RECEIVED entry and stores the
  // receipt that `sign_receipt` signed, which it returns. FAILED_PRECONDITION when the batch
  // does not start at cursor+1. Nothing is stored then.
  virtual absl::StatusOr<std::optional<caseway::v1::Signed>> StoreReceived(
      const common::CheckedBatch& batch, const Signer& sign_receipt) = 0;
  // ReceiptsSent returns the receipts this node signed for batches from `origin` with
  // last_seq > after, in order.
  virtual absl::StatusOr<std::vector<std::pair<uint64_t, caseway::v1::Signed>>> ReceiptsSent(
      const std::string& origin, uint64_t after) = 0;

  // --- To the consumers (Gateway.Inbox) ---

  // ReadInbox returns unacknowledged inbox rows with inbox_seq > after, oldest first.
  virtual absl::StatusOr<std::vector<InboxRow>> ReadInbox(uint64_t after, uint32_t limit) = 0;
  // AckInboxAsync marks rows consumed; `done` (on the writer thread) gets NOT_FOUND naming the
  // first inbox_seq that does not exist (and none is marked).
  virtual void AckInboxAsync(std::vector<uint64_t> inbox_seqs, WriteDone done) = 0;
  // SetInboxListener registers the one callback run (on the writer thread; it must not block)
  // after every commit that added rows to the inbox.
  virtual void SetInboxListener(std::function<void()> listener) = 0;
  // InboxSummary counts the inbox and dates its oldest notice not yet taken by the consumer.
  struct InboxSummary {
    uint64_t total = 0;
    uint64_t unacked = 0;
    std::optional<absl::Time> oldest_unacked;  // received_at; nullopt when everything is taken
  };
  virtual absl::StatusOr<InboxSummary> Inbox() = 0;

  // Version increases with every commit (a reader compares it before and after to know whether
  // it may have missed one); Barrier returns once every write submitted before it has completed.
  virtual uint64_t Version() = 0;
  virtual void Barrier() = 0;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_INBOX_STORE_H_
