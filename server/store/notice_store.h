// NoticeStore: a node's durable state in one SQLite database: published notices and their
// outbound channel entries, inbound cursors and the inbox.
#ifndef CASEWAY_SERVER_STORE_NOTICE_STORE_H_
#define CASEWAY_SERVER_STORE_NOTICE_STORE_H_

#include <array>
#include <atomic>
#include <chrono>
#include <set>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <thread>
#include <string>
#include <variant>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "caseway/v1/exchange_log.pb.h"
#include "caseway/v1/gateway.pb.h"
#include "caseway/v1/peer_exchange.pb.h"
#include "common/notice_facts.h"
#include "common/policy.h"
#include "common/sharing.h"
#include "common/signing.h"
#include "server/store/access_log.h"
#include "server/store/case_store.h"
#include "server/store/channel_store.h"
#include "server/store/commit_queue.h"
#include "server/store/exchange_log_store.h"
#include "server/store/inbox_store.h"
#include "server/store/merkle_log.h"
#include "server/store/sealer.h"
#include "server/store/sqlite.h"

namespace caseway::server {

// The schema version this binary writes. Version 6: notice, inbox and query-answer bodies may be
// sealed (server/store/sealer.h), and meta 'seal_keys' lists the keys that sealed them; an older
// binary would take a sealed body for a notice that does not parse.
// Version 7: shared_copy, a destination's copy under a sharing policy (an older binary would send
// the whole notice). Version 8: copies sealed under (destination, notice id), answers kept as
// evidence kind 7, meta 'feed_epoch' (a version-7 binary could not open the new copies).
// Version 9: Merkle levels 1 and 2 computed, not stored. Version 10: to-do items (obligation)
// keyed by channel position, not notice id (a version-9 binary would find none of them).
inline constexpr int kStoreSchemaVersion = 10;

// StoreOptions configure NoticeStore::Open.
// The exit status of a node stopped by a storage fault (NoticeStore::StorageFault).
inline constexpr int kStorageFaultExitCode = 75;

struct StoreOptions {
  // The database: a SQLite file at `path` (the embedded default), or, when `postgres_dsn` is set,
  // the PostgreSQL database that libpq connection string names (`path` is then unused).
  std::string path;
  std::string postgres_dsn;
  int group_commit_max = 4096;
  // This node's jurisdiction (the signer of receipts).
  std::string self;
  // The exchange log: entries for every event, evidence, checkpoints. Off only for benchmarks.
  // The store holds no signing key: what it signs, it has signed by the caller's Signer.
  bool log_enabled = true;
  // The federation policy: which notices owe a reply, and by when (nullptr: the built-in one).
  const common::Policy* policy = nullptr;
  // The sharing policy (docs/privacy.md): what each party may receive (nullptr: none).
  const common::SharingPolicy* sharing = nullptr;
  // Seals personal data at rest (storage.key_file); nullptr: stored in the clear. Open refuses a
  // database that keys sealed data in without it, or without one of those keys.
  std::shared_ptr<const Sealer> sealer;
  // The WAL's length past which the background checkpoint waits (50 ms, writers held; twice as
  // long after each round that gave up, to 1 s) for one moment with every frame copied, so that the next commit starts the WAL again from
  // its beginning. Without it, continuous commits keep a PASSIVE checkpoint always a little
  // behind and the WAL grows by every byte written (bench/results/PROFILE.md, "Growth").
  int64_t wal_restart_bytes = 128 << 20;
  // The case index's new rows wait in case_index_new (and in memory, where FindCase reads them)
  // and are merged into case_index sorted by key, all at once: once `case_merge_interval` has
  // passed since the last merge, or sooner once `case_merge_rows` wait (the merge is one writer
  // operation: the row count keeps it short under load). The keys are salted digests, so each row
  // lands on a random page of case_index; the more rows a merge carries, the more of them share a
  // page written once (bench/results/PROFILE.md, "How cost grows with real notice ids and cases").
  absl::Duration case_merge_interval = absl::Seconds(4);
  int64_t case_merge_rows = 65536;
  // Active/standby on PostgreSQL (server/store/writer_lease.h): the writer lease this node holds
  // (epoch 0: none). Every write transaction first checks it (WriterLease::Fence); once the check
  // fails, `fenced` runs (once, on the writer thread) and every write fails.
  std::string lease_holder;
  int64_t lease_epoch = 0;
  std::function<void(const absl::Status&)> fenced;
  // On PostgreSQL, the idle_in_transaction_session_timeout of the store's sessions (zero: the
  // server's). A node frozen inside a write transaction holds the lease row's share lock that
  // Fence took; the server ends its session after this long and the standby can take the lease.
  // The node sets it to the lease's ttl, which no healthy write transaction comes near.
  absl::Duration postgres_idle_in_transaction;
  // On PostgreSQL, runs once (on the writer thread) when the writer's connection is lost: the
  // server restarted, ended the session or became unreachable. The group in flight failed and
  // nothing of it was acknowledged; every later write fails (UNAVAILABLE). The node stops then,
  // and its restart reconnects (docs/operator.md).
  std::function<void(const absl::Status&)> connection_lost;
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
struct TodoKey;  // statements.h

class NoticeStore final : public ChannelStore,
                          public InboxStore,
                          public CaseStore,
                          public ExchangeLogStore,
                          public AccessLog {
 public:
  // Open creates or migrates the schema at `options.path`. INTERNAL on SQLite errors,
  // FAILED_PRECONDITION when the file has a newer schema version than this binary knows.
  static absl::StatusOr<std::unique_ptr<NoticeStore>> Open(const StoreOptions& options);
  ~NoticeStore();

  // Connect opens a new connection to the database `options` names (SQLite or PostgreSQL), for
  // what the store's methods do not cover (tools, tests).
  static absl::StatusOr<std::unique_ptr<Db>> Connect(const StoreOptions& options);

  // Publish stores every notice and its channel entries in one transaction, returning one result
  // per notice in order. Identical republished content returns the original result with
  // duplicate = true. ALREADY_EXISTS "notices[i]: ..." when an id is taken by different content;
  // then nothing of the call is stored.
  absl::StatusOr<std::vector<caseway::v1::PublishResult>> Publish(
      const std::vector<PreparedNotice>& notices);

  // --- Published notices and their channels (ChannelStore, channel_store.h) ---
  void PublishAsync(std::vector<PreparedNotice> notices, PublishDone done) override;
  absl::StatusOr<std::vector<caseway::v1::Entry>> ReadChannel(const std::string& destination,
                                                              uint64_t from_seq,
                                                              uint32_t max_entries,
                                                              uint64_t max_bytes) override;
  ChannelState Channel(const std::string& destination) override;
  std::map<std::string, ChannelState> Channels() override;

  // WriteDone receives the durable result of an asynchronous write, on the writer thread; it
  // must not block.
  using WriteDone = std::function<void(const absl::Status&)>;

  // RecordAck durably raises the acknowledged position of a channel (never lowers it).
  absl::Status RecordAck(const std::string& destination, uint64_t seq);
  void RecordAckAsync(const std::string& destination, uint64_t seq, WriteDone done) override;
  void SetChannelListener(ChannelListener listener) override;
  absl::StatusOr<std::map<std::string, absl::Time>> OldestUnacked() override;
  absl::StatusOr<bool> Published(const std::string& notice_id) override;
  absl::StatusOr<std::optional<std::string>> StoredDigest(const std::string& notice_id) override;

  // --- The inbox (InboxStore, inbox_store.h) ---
  absl::StatusOr<uint64_t> Cursor(const std::string& origin) override;
  absl::StatusOr<std::optional<caseway::v1::Signed>> StoreReceived(
      const common::CheckedBatch& batch, const Signer& sign_receipt) override;
  absl::StatusOr<std::vector<InboxRow>> ReadInbox(uint64_t after, uint32_t limit) override;
  // AckInbox marks rows consumed. NOT_FOUND naming the first inbox_seq that does not exist (and
  // none of `inbox_seqs` is marked).
  absl::Status AckInbox(const std::vector<uint64_t>& inbox_seqs);
  void AckInboxAsync(std::vector<uint64_t> inbox_seqs, WriteDone done) override;
  void SetInboxListener(std::function<void()> listener) override;

  absl::StatusOr<InboxSummary> Inbox() override;

  // CommitObserver hears, on the writer thread after each group transaction, how long it took
  // from BEGIN to the end of COMMIT, how many operations it held and whether it committed. It
  // must not block. Set it before the store is used.
  using CommitObserver = std::function<void(absl::Duration, size_t operations, bool committed)>;
  void SetCommitObserver(CommitObserver observer);
  // CommitGroupsRerun counts the group transactions run a second time, with a savepoint around
  // each operation, because an operation failed in a group run without them (CommitQueue).
  uint64_t CommitGroupsRerun() const;

  // --- Replies and the to-do list (notice_store_todo.cc, docs/policy.md) ---

  // Overdue counts open to-do items past their due time at `now`, per peer: how many this node
  // owes the peer (first) and the peer owes this node (second). Peers without any are absent.
  absl::StatusOr<std::map<std::string, std::pair<uint64_t, uint64_t>>> Overdue(absl::Time now);

  absl::StatusOr<std::vector<std::string>> ReceivedFrom(const std::string& notice_id) override;
  absl::StatusOr<caseway::v1::TodoResponse> Todo(const caseway::v1::TodoRequest& request,
                                                 absl::Time now) override;
  // Restore (docs/operator.md, "Backup and restore"). A database made by BackupDatabase carries
  // the time it was taken; the node asks its peers what they hold of it before exchanging
  // anything (server/restore.h). `checked` once that passed; `unconfirmed` the destinations that
  // could not be asked (serve_only peers) and whose channels stay held until each subscribes.
  struct RestoreMark {
    absl::Time taken_at;
    bool checked = false;
    std::set<std::string> unconfirmed;
  };
  // RestoredFrom returns the mark, nullopt for a database that is not a restored backup.
  absl::StatusOr<std::optional<RestoreMark>> RestoredFrom();
  // SetRestoreChecked records that the peers confirmed the copy, with the destinations still to
  // confirm (held); with none left the mark is removed.
  absl::Status SetRestoreChecked(const std::set<std::string>& unconfirmed);
  // HoldChannels refuses new notices to `destinations` (UNAVAILABLE, "awaits ... after a
  // restore") until ConfirmChannel releases each.
  void HoldChannels(const std::set<std::string>& destinations);
  bool Held(const std::string& destination) override;
  // ConfirmChannel releases a held channel (its destination subscribed with a cursor within the
  // head) and records it. A no-op for a channel not held.
  void ConfirmChannel(const std::string& destination) override;

  // RecordPolicy appends a POLICY entry when `policy` differs from the last one recorded here
  // (with the log on), and remembers it.
  absl::Status RecordPolicy(const common::Policy& policy);
  // RecordSharingPolicy appends a SHARING_POLICY entry and keeps the policy, signed, as evidence
  // when it differs from the last one recorded here (with the log on), and remembers it. A node
  // that had a policy and now has none (nullptr) appends an entry with no digest and no version.
  // FAILED_PRECONDITION when its version label was recorded before with other content.
  // `sign_policy` signs the policy's bytes when it is kept.
  absl::Status RecordSharingPolicy(const common::SharingPolicy* policy, const Signer& sign_policy);
  const common::SharingPolicy* sharing() const { return options_.sharing; }
  absl::Status RecordClockOffset(const std::string& peer, absl::Duration offset,
                                 bool exceeded) override;
  const common::Policy& policy() const {
    return options_.policy != nullptr ? *options_.policy : common::Policy::Default();
  }

  // --- Cases and remote queries (notice_store_case.cc, docs/protocol.md "Remote query") ---

  // PendingKey is a row of case_index_new: an index row committed, not yet merged.
  struct PendingKey {
    int64_t id = 0;  // case_index_new.id
    int64_t key = 0;
    std::variant<int64_t, std::string> ref;  // inbox_seq, or notice_id
  };

  using CaseRecord = ::caseway::server::CaseRecord;
  // (CaseStore, case_store.h)
  absl::StatusOr<std::vector<CaseRecord>> FindCase(
      absl::string_view key, bool by_subject, size_t limit, bool* truncated,
      const std::string& party = "", const std::set<std::string>* kinds = nullptr) override;
  absl::StatusOr<std::vector<CaseRecord>> ReadFeed(const caseway::v1::FeedPosition& after,
                                                   const std::set<std::string>& kinds, size_t limit,
                                                   caseway::v1::FeedPosition* next,
                                                   bool* more) override;
  absl::StatusOr<std::vector<caseway::v1::TodoItem>> RepliesOf(const std::string& origin,
                                                                const std::string& notice_id,
                                                                absl::Time now) override;
  absl::StatusOr<caseway::v1::Signed> AnswerQuery(caseway::v1::QueryAnswer answer,
                                                  const AccessEntry& access,
                                                  const Signer& sign_answer) override;
  absl::StatusOr<uint64_t> RecordQueryAsked(const std::string& peer,
                                            const caseway::v1::QueryAnswer& answer,
                                            const caseway::v1::Signed& signed_answer,
                                            const AccessEntry& access) override;

  // --- Access log (AccessLog, access_log.h; notice_store_access.cc) ---
  absl::Status RecordAccess(const AccessEntry& entry) override;
  void RecordAccessAsync(AccessEntry entry, WriteDone done) override;
  absl::StatusOr<std::vector<caseway::v1::AccessRecord>> ReadAccess(const std::string& id_number,
                                                                    uint64_t after,
                                                                    uint32_t limit) override;

  // --- Exchange log (docs/exchange-log.md); all no-ops or FAILED_PRECONDITION when disabled. ---

  // Retention (docs/operator.md, Retention). Purge removes the personal data of what was published
  // or received before `before` (a query answer: asked) and is settled: the bytes of notices
  // published here that every destination acknowledged
  // (with the log on, only after its signed receipt verified) and that are owed no open reply;
  // of received notices the consumer took and this node owes no reply to; and of received query
  // answers. Their case-index rows go too. Digests, the exchange log, manifests, receipts and
  // signatures stay, so every proof still verifies. A purged notice reads as empty bytes.
  // One call is one transaction over at most `limit` rows of each table, resuming where the
  // last one stopped; `more` says whether rows older than `before` remain to be looked at.
  // `tables` selects which of the three (notices, inbox, answers) this call looks at; `more_in`
  // says, per table, whether its pass goes on.
  struct PurgeCounts {
    uint64_t published = 0;
    uint64_t received = 0;
    uint64_t answers = 0;
    bool more = false;
    std::array<bool, 3> more_in = {false, false, false};
  };
  absl::StatusOr<PurgeCounts> Purge(absl::Time before, int limit,
                                    std::array<bool, 3> tables = {true, true, true});

  bool log_enabled() const override { return options_.log_enabled; }
  // RecordSigningKey appends a SIGNING_KEY entry when `public_key` is not the last one recorded
  // here (the first start with the log, or a rotation), and remembers it.
  absl::Status RecordSigningKey(const std::string& public_key);
  const std::string& self() const override { return options_.self; }

  // RecordSent durably stores a signed manifest sent to `destination` and appends its SENT entry.
  absl::Status RecordSent(const std::string& destination, const caseway::v1::BatchManifest& m,
                          const caseway::v1::Signed& signed_manifest);
  void RecordSentAsync(const std::string& destination, const caseway::v1::BatchManifest& m,
                       const caseway::v1::Signed& signed_manifest, WriteDone done) override;
  absl::StatusOr<std::string> SentManifestDigest(const std::string& destination,
                                                 uint64_t first_seq, uint64_t last_seq) override;
  // SentAfter returns up to `limit` manifests this node signed for `destination` that end after
  // `after`, by last_seq: the batches a reconnecting subscriber is sent again as they were.
  absl::StatusOr<std::vector<caseway::v1::Evidence>> SentAfter(const std::string& destination,
                                                               uint64_t after, int limit) override;
  // RecordReceipt stores a verified receipt from `destination`, appends RECEIPT_RECEIVED and
  // raises the channel's acked position to receipt.last_seq.
  absl::Status RecordReceipt(const std::string& destination, const caseway::v1::Receipt& receipt,
                             const caseway::v1::Signed& signed_receipt);
  void RecordReceiptAsync(const std::string& destination, const caseway::v1::Receipt& receipt,
                          const caseway::v1::Signed& signed_receipt, WriteDone done) override;
  absl::StatusOr<std::vector<std::pair<uint64_t, caseway::v1::Signed>>> ReceiptsSent(
      const std::string& origin, uint64_t after) override;

  // --- The exchange log as stored (ExchangeLogStore, exchange_log_store.h) ---
  std::pair<uint64_t, std::string> LogHead() override;
  absl::StatusOr<std::vector<std::string>> ReadEntries(uint64_t start, uint64_t end) override;
  absl::StatusOr<std::vector<std::string>> InclusionProof(uint64_t index,
                                                          uint64_t tree_size) override;
  absl::StatusOr<std::vector<std::string>> ConsistencyProof(uint64_t first,
                                                            uint64_t second) override;
  absl::StatusOr<std::vector<caseway::v1::Evidence>> ReadEvidence(
      const std::string& peer, caseway::v1::Evidence::Kind kind1, caseway::v1::Evidence::Kind kind2,
      uint64_t after, uint32_t limit, uint64_t max_bytes) override;
  absl::StatusOr<caseway::v1::NoticeEvidence> NoticeEvidence(const std::string& notice_id,
                                                              const std::string& origin) override;
  absl::Status StoreCheckpoint(const StoredCheckpoint& checkpoint) override;
  absl::StatusOr<StoredCheckpoint> LatestCheckpoint() override;
  absl::StatusOr<StoredCheckpoint> CheckpointAt(uint64_t size) override;
  absl::Status AddCosignature(uint64_t size, const std::string& witness,
                              const std::string& line) override;
  absl::StatusOr<common::Checkpoint> Witnessed(const std::string& peer,
                                               std::string* note = nullptr) override;
  absl::Status RecordCosigned(const std::string& peer, const common::Checkpoint& checkpoint,
                              const std::string& note) override;
  absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> ReadNotices(
      const std::string& peer, bool outbound, uint64_t first_seq, uint32_t limit,
      uint64_t max_bytes) override;
  absl::StatusOr<caseway::v1::BatchManifest> LastManifestReceived(
      const std::string& peer) override;

  // --- Integrity (ExchangeLogStore) ---
  absl::Status Halted() override;
  void Halt(const std::string& reason) override;
  // HaltListener hears a halt once, on the thread that called Halt. It must not block.
  void SetHaltListener(std::function<void(const std::string&)> listener);
  uint64_t LogSizeAtOpen() const override { return size_at_open_; }
  uint64_t EventsEnd() const override { return events_end_.load(std::memory_order_acquire); }
  absl::StatusOr<common::MerkleFrontier> StoredFrontier(uint64_t size) override;
  absl::Status VerifyStored(common::MerkleFrontier& frontier, uint64_t end,
                            const MerkleLog::EntryVisitor& visit = nullptr) override;

  // Barrier returns once every write submitted before it has completed (its callback has run).
  void Barrier() override;

  // Version increases with every commit; Wait blocks until it exceeds `seen` or `deadline`.
  uint64_t Version() override;
  uint64_t Wait(uint64_t seen, absl::Time deadline);

 private:
  struct WriterStatements;
  struct LogStatements;
  NoticeStore(StoreOptions options, std::unique_ptr<WriterStatements> stmts);
  // RequireSigner: with the exchange log on, `what` is signed, so the caller must give a Signer.
  absl::Status RequireSigner(const Signer& sign, absl::string_view what) const;
  void PrepareLogStatements(Db* db);
  // AppendEntry fills version, index and time, serializes `entry` once and appends it (writer
  // thread, inside a transaction). Returns the index.
  absl::StatusOr<uint64_t> AppendEntry(caseway::v1::LogEntry& entry);
  // LogReceived stores the manifest, appends RECEIVED and has the receipt signed and stores it
  // (writer thread, inside StoreReceived's transaction).
  absl::StatusOr<std::optional<caseway::v1::Signed>> LogReceived(const std::string& origin,
                                                                 const caseway::v1::Batch& batch,
                                                                 int64_t now_micros,
                                                                 const Signer& sign_receipt);
  // TrackPublished / TrackReceived open the items a new notice owes and clear those its reply,
  // void or correction settles (writer thread, inside the notice's transaction).
  struct TodoStatements;
  absl::Status TrackPublished(const common::NoticeFacts& facts,
                              const caseway::v1::PublishResult& result, int64_t now_micros);
  absl::Status TrackReceived(const std::string& origin, int64_t channel_seq,
                             const common::NoticeFacts& facts, int64_t now_micros);
  // TodoKeyOf is the key the item (origin, notice_id, peer) has (writer thread); nullopt when
  // the node holds no such notice or it has no channel to `peer`.
  absl::StatusOr<std::optional<TodoKey>> TodoKeyOf(const std::string& origin,
                                                   const std::string& notice_id,
                                                   const std::string& peer);
  // Settle moves the open item (origin, notice_id, peer), following corrections, to `state`.
  // Returns false when there is no such item.
  absl::StatusOr<bool> Settle(const std::string& origin, const std::string& notice_id,
                              const std::string& peer, int state, const std::string& by,
                              int64_t at);
  // The case index (notice_store_case.cc): each notice's two rows go to case_index_new in its
  // own transaction and, once committed, into `pending_keys_` (what FindCase reads besides
  // case_index); MergeCaseIndex moves them into case_index, sorted (StoreOptions::
  // case_merge_interval and case_merge_rows say when).
  // IndexPublished / IndexReceived append the index rows of a notice published here, or
  // received into inbox row `inbox_seq` (writer thread, in the notice's transaction), to `keys`.
  absl::Status IndexPublished(const common::NoticeFacts& facts, std::vector<PendingKey>* keys);
  absl::Status IndexReceived(int64_t inbox_seq, const common::NoticeFacts& facts,
                             std::vector<PendingKey>* keys);
  // AddPendingKeys makes committed rows visible to FindCase (writer thread, after the commit).
  void AddPendingKeys(std::vector<PendingKey> keys);
  absl::Status LoadPendingKeys(Db& db);
  // CaseMergeDue says whether the rows waiting are due to be merged, the last merge having
  // ended at `last_merge` (a monotonic clock: a wall clock set back must not hold merges off).
  bool CaseMergeDue(std::chrono::steady_clock::time_point last_merge);
  // MergeCaseIndex moves the rows of case_index_new committed so far into case_index.
  absl::Status MergeCaseIndex();
  absl::Mutex index_mu_;
  std::deque<PendingKey> pending_keys_ ABSL_GUARDED_BY(index_mu_);
  // Where Purge resumes in the notice, inbox and evidence tables: `from` is the rowid the scan
  // continues after, `next` the one the next pass starts after (-1: none left unsettled yet).
  struct PurgeScan {
    int64_t from = 0;
    int64_t next = -1;
  };
  PurgeScan purge_[3];  // Purge is called by one thread at a time (the node's retention thread)  // in id order
  absl::Mutex merge_mu_;  // held by a merge; the destructor takes it to stop merging
  bool stop_merging_ ABSL_GUARDED_BY(merge_mu_) = false;
  // FillTodoItem reads one row of kTodoColumns into `item`, judged at `now`.
  void FillTodoItem(const Stmt& s, absl::Time now, caseway::v1::TodoItem* item) const;
  // Salt of the subject keys in case_index (meta 'subject_salt', made once per database).
  std::string subject_salt_;
  std::string feed_epoch_;  // meta.feed_epoch: departments' feed positions count in this file
  // The access log's key: subjects are stored as HMAC-SHA256(access_key_, identity number). Kept
  // in meta 'access_key', sealed when storage encryption is on (the file alone does not let
  // anyone test guesses then).
  std::string access_key_;
  static absl::StatusOr<std::string> LoadAccessKey(Db& db, const Sealer* sealer);
  absl::Status InsertAccess(Db* db, const AccessEntry& entry);  // on the writer thread
  std::string SubjectKey(absl::string_view id_number) const;
  absl::Status InsertEvidence(caseway::v1::Evidence::Kind kind, const std::string& peer,
                              uint64_t first_seq, uint64_t last_seq, const std::string& digest,
                              const caseway::v1::Signed& signed_message, uint64_t log_index);
  // ReadOnly runs `fn` with a pooled read connection.
  template <typename Fn>
  auto ReadOnly(Fn fn) -> decltype(fn(static_cast<Db*>(nullptr)));
  absl::StatusOr<std::unique_ptr<Db>> AcquireReader();
  bool postgres() const { return !options_.postgres_dsn.empty(); }
  void ReleaseReader(std::unique_ptr<Db> db);
  void Committed(const std::map<std::string, ChannelState>& changes);
  // CommittedAcked is Committed for one channel's new acked position.
  void CommittedAcked(const std::string& destination, uint64_t acked);
  // AwaitWrite runs `submit` with a WriteDone and waits for it: the blocking form of a *Async
  // write.
  static absl::Status AwaitWrite(const std::function<void(WriteDone)>& submit);

  // Writer thread: the time of the last entry appended (entry times never go backwards).
  int64_t last_entry_micros_ = 0;
  uint64_t size_at_open_ = 0;
  std::atomic<uint64_t> events_end_{0};

  absl::Mutex halt_mu_;
  // halted_ is set once; is_halted_ lets the append path check it without the mutex.
  std::atomic<bool> is_halted_{false};
  std::string halted_ ABSL_GUARDED_BY(halt_mu_);
  std::function<void(const std::string&)> halt_listener_ ABSL_GUARDED_BY(halt_mu_);

  const StoreOptions options_;
  const std::string& path_ = options_.path;
  std::unique_ptr<WriterStatements> stmts_;  // outlives queue_: used by its thread
  std::unique_ptr<LogStatements> log_stmts_;  // outlives queue_
  std::unique_ptr<TodoStatements> todo_stmts_;  // outlives queue_
  std::unique_ptr<MerkleLog> log_;            // outlives queue_ (its participant)
  std::unique_ptr<CommitQueue> queue_;

  absl::Mutex readers_mu_;
  std::vector<std::unique_ptr<Db>> readers_ ABSL_GUARDED_BY(readers_mu_);

  // WAL checkpointer: copies committed WAL frames into the database in the background (PASSIVE,
  // never blocking the writer) every 500 ms; the writer reuses the WAL from its start after.
  void CheckpointLoop();
  // StorageFault ends the process at once (no destructor, no further SQLite call): an I/O error
  // in a background write leaves the WAL as the only good copy of committed data.
  [[noreturn]] static void StorageFault(absl::string_view what, const absl::Status& status);
  std::thread wal_checkpointer_;
  bool stop_checkpointer_ ABSL_GUARDED_BY(mu_) = false;
  // Set when a purge removed personal data: the next WAL checkpoint is a TRUNCATE, so that no
  // old page image holding it stays behind in the WAL file.
  std::atomic<bool> truncate_wal_{false};

  absl::Mutex mu_;
  std::map<std::string, ChannelState> channels_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> held_ ABSL_GUARDED_BY(mu_);  // channels awaiting confirmation (restore)
  std::atomic<bool> any_held_{false};                 // !held_.empty(), read without the lock
  uint64_t version_ ABSL_GUARDED_BY(mu_) = 0;
  ChannelListener listener_ ABSL_GUARDED_BY(mu_);
  std::function<void()> inbox_listener_ ABSL_GUARDED_BY(mu_);
};

}  // namespace caseway::server

#endif  // CASEWAY_SERVER_STORE_NOTICE_STORE_H_
