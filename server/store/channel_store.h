// ChannelStore: the origin side of the store, as publishing (server/gateway/) and serving the
// channels to subscribing peers (server/exchange/) use it.
#ifndef CASEWAY_SERVER_STORE_CHANNEL_STORE_H_
#define CASEWAY_SERVER_STORE_CHANNEL_STORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "caseway/v1/exchange_log.pb.h"
#include "caseway/v1/gateway.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "common/notice_facts.h"

namespace caseway::server {

// PreparedNotice is a validated notice ready to store: `bytes` is its serialization with the
// origin set, stored and delivered byte for byte; `digest` is SHA-256 of `bytes`.
// `request_digest` is SHA-256 of the notice as the publisher sent it (origin set, before the node
// filled reply_due or in_reply_to_origin): what a retry is compared by. Publish stores `bytes`
// sealed when storage encryption is on (StoreOptions::sealer); reads return them plain.
struct PreparedNotice {
  std::string notice_id;
  std::vector<std::string> destinations;
  std::string bytes;
  std::string digest;
  // Set when the sharing policy removed fields for a destination: per destinations[i], the bytes
  // it receives ("" = `bytes`), and the digest of the policy applied.
  std::vector<std::string> copies;
  std::string sharing_policy_digest;
  std::string request_digest;
  common::NoticeFacts facts;
  std::vector<std::string> warnings;
};

// ChannelState is an outbound channel's positions.
struct ChannelState {
  uint64_t head = 0;
  uint64_t acked = 0;
};

// ContentConflict is the ALREADY_EXISTS refusal of a notice_id stored with other content
// (reason CONTENT_CONFLICT); `path` prefixes the field ("notices[3]." or "notice.").
absl::Status ContentConflict(const std::string& path, const std::string& notice_id);

// ChannelStore holds what this node published: the notices, and per destination a channel of
// them in sequence order with the position the destination acknowledged; the manifests signed
// for the batches sent and the receipts that came back. Implemented by NoticeStore, on SQLite and
// PostgreSQL. Thread-safe; the asynchronous forms' callbacks run on the writer thread and must
// not block.
class ChannelStore {
 public:
  using WriteDone = std::function<void(const absl::Status&)>;
  virtual ~ChannelStore() = default;

  // --- Publishing ---

  using PublishDone =
      std::function<void(absl::StatusOr<std::vector<caseway::v1::PublishResult>>)>;
  // PublishAsync stores the notices in one transaction and assigns each destination's next
  // sequence; `done` gets one result per notice once it is durable. A notice_id stored before
  // with the same content is a duplicate (the original result, duplicate = true); ALREADY_EXISTS
  // "notices[i]: ..." when an id is taken by different content, and nothing of the call is
  // stored.
  virtual void PublishAsync(std::vector<PreparedNotice> notices, PublishDone done) = 0;
  // Published reports whether this node published `notice_id`.
  virtual absl::StatusOr<bool> Published(const std::string& notice_id) = 0;
  // StoredDigest returns what a publish of `notice_id` is compared by (the digest of the notice
  // as its publisher sent it), nullopt when it is not stored.
  virtual absl::StatusOr<std::optional<std::string>> StoredDigest(
      const std::string& notice_id) = 0;

  // --- The channels ---

  // ReadChannel returns committed entries of the channel to `destination` from `from_seq`, at
  // most `max_entries` and about `max_bytes` (always at least one when available).
  virtual absl::StatusOr<std::vector<caseway::v1::Entry>> ReadChannel(
      const std::string& destination, uint64_t from_seq, uint32_t max_entries,
      uint64_t max_bytes) = 0;
  virtual ChannelState Channel(const std::string& destination) = 0;
  virtual std::map<std::string, ChannelState> Channels() = 0;
  // RecordAckAsync durably raises the acknowledged position of a channel (never lowers it).
  virtual void RecordAckAsync(const std::string& destination, uint64_t seq, WriteDone done) = 0;
  // ChannelListener hears, on the writer thread after each commit that moved outbound channels,
  // the new positions of those channels (head and acked; 0 where unchanged). It must not block.
  using ChannelListener = std::function<void(const std::map<std::string, ChannelState>&)>;
  virtual void SetChannelListener(ChannelListener listener) = 0;
  // OldestUnacked returns, for every channel with notices its destination has not acknowledged,
  // when the first of them (seq acked + 1) was published here.
  virtual absl::StatusOr<std::map<std::string, absl::Time>> OldestUnacked() = 0;
  // A restored node holds a channel (takes nothing new into it) until its destination confirmed
  // what it holds (server/restore.h): Held says whether it still does; ConfirmChannel ends it.
  virtual bool Held(const std::string& destination) = 0;
  virtual void ConfirmChannel(const std::string& destination) = 0;

  // --- Batches sent (docs/exchange-log.md) ---

  // RecordSentAsync stores a signed manifest sent to `destination` and appends its SENT entry.
  virtual void RecordSentAsync(const std::string& destination, const caseway::v1::BatchManifest& m,
                               const caseway::v1::Signed& signed_manifest, WriteDone done) = 0;
  // SentManifestDigest returns the digest of the manifest this node signed for `destination`
  // over [first_seq, last_seq] most recently (NOT_FOUND when none).
  virtual absl::StatusOr<std::string> SentManifestDigest(const std::string& destination,
                                                         uint64_t first_seq,
                                                         uint64_t last_seq) = 0;
  // SentAfter returns up to `limit` manifests this node signed for `destination` that end after
  // `after`, by last_seq: the batches a reconnecting subscriber is sent again as they were.
  virtual absl::StatusOr<std::vector<caseway::v1::Evidence>> SentAfter(
      const std::string& destination, uint64_t after, int limit) = 0;
  // RecordReceiptAsync stores a verified receipt from `destination`, appends RECEIPT_RECEIVED
  // and raises the channel's acknowledged position to receipt.last_seq.
  virtual void RecordReceiptAsync(const std::string& destination,
                                  const caseway::v1::Receipt& receipt,
                                  const caseway::v1::Signed& signed_receipt, WriteDone done) = 0;

  // Barrier returns once every write submitted before it has completed (its callback has run).
  virtual void Barrier() = 0;
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_CHANNEL_STORE_H_
