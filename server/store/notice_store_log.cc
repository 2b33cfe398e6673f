// NoticeStore: the exchange log part (entries, evidence, checkpoints, witnessing).
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/util/time_util.h>

#include <tuple>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/log_entry.h"
#include "common/proto_bytes.h"
#include "common/fault.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "server/store/notice_store.h"

#include "server/store/statements.h"

namespace caseway::server {

using google::protobuf::util::TimeUtil;

void NoticeStore::PrepareLogStatements(Db* db) {
  log_stmts_ = std::make_unique<LogStatements>(db);
  todo_stmts_ = std::make_unique<TodoStatements>(db);
}

// Defined here, where LogStatements is complete. The queue goes first: its thread uses the
// statements and the Merkle log.
NoticeStore::~NoticeStore() {
  {
    // No merge may use the queue once it is going.
    absl::MutexLock merging(&merge_mu_);
    stop_merging_ = true;
  }
  if (queue_) {
    common::Log(common::LogLevel::kInfo, "store closed",
                {{"commits", absl::StrCat(queue_->groups_committed())},
                 {"operations", absl::StrCat(queue_->ops_committed())},
                 {"writer_busy_ms", absl::StrCat(queue_->busy_micros() / 1000)}});
  }
  queue_.reset();
  {
    absl::MutexLock lock(&mu_);
    stop_checkpointer_ = true;
  }
  if (wal_checkpointer_.joinable()) wal_checkpointer_.join();
}

namespace {

// EvidenceColumns and EvidenceFromRow read one evidence row: every query that returns evidence
// selects these columns in this order. A query answer's message (received or sent) is sealed at
// rest.
constexpr const char* kEvidenceColumns =
    "id, kind, first_seq, last_seq, message, signature, log_index, digest";

absl::StatusOr<v1::Evidence> EvidenceFromRow(const Stmt& s, const std::string& self,
                                             const std::string& peer, const Sealer* sealer) {
  v1::Evidence e;
  auto kind = static_cast<v1::Evidence::Kind>(s.Int(1));
  e.set_id(s.Int(0));
  e.set_kind(kind);
  e.set_first_seq(s.Int(2));
  e.set_last_seq(s.Int(3));
  if (kind == v1::Evidence::KIND_QUERY_ANSWER_RECEIVED ||
      kind == v1::Evidence::KIND_QUERY_ANSWER_SENT) {
    ASSIGN_OR_RETURN(*e.mutable_signed_()->mutable_message(),
                     OpenBody(sealer, s.Blob(4), AnswerContext(peer, s.Blob(7))));
  } else {
    e.mutable_signed_()->set_message(std::string(s.Blob(4)));
  }
  e.mutable_signed_()->set_signature(std::string(s.Blob(5)));
  const bool ours = kind == v1::Evidence::KIND_MANIFEST_SENT ||
                    kind == v1::Evidence::KIND_RECEIPT_SENT ||
                    kind == v1::Evidence::KIND_QUERY_ANSWER_SENT;
  e.mutable_signed_()->set_signer(ours ? self : peer);
  e.set_log_index(s.Int(6));
  if (s.Blob(4).empty()) e.set_purged_digest(std::string(s.Blob(7)));  // retention
  return e;
}

}  // namespace

absl::StatusOr<uint64_t> NoticeStore::AppendEntry(v1::LogEntry& entry) {
  RETURN_IF_ERROR(Halted());
  entry.set_version(1);
  entry.set_index(log_->NextIndex());
  // Entry times never go backwards, even when the clock does (docs/exchange-log.md).
  last_entry_micros_ = std::max(last_entry_micros_, absl::ToUnixMicros(common::Now()));
  *entry.mutable_time() = TimeUtil::MicrosecondsToTimestamp(last_entry_micros_);
  if (entry.kind() != v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED) {
    events_end_.store(std::max(events_end_.load(std::memory_order_relaxed), entry.index() + 1),
                      std::memory_order_release);
  }
  return log_->Append(common::DeterministicBytes(entry));
}

absl::Status NoticeStore::Halted() {
  if (!is_halted_.load(std::memory_order_acquire)) return absl::OkStatus();
  absl::MutexLock lock(&halt_mu_);
  if (halted_.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "exchange halted: this node's exchange log failed its integrity check (", halted_,
      "); see docs/operator.md, \"A halted node\""));
}

void NoticeStore::Halt(const std::string& reason) {
  std::function<void(const std::string&)> listener;
  {
    absl::MutexLock lock(&halt_mu_);
    if (!halted_.empty()) return;
    halted_ = reason;
    is_halted_.store(true, std::memory_order_release);
    listener = halt_listener_;
  }
  common::Log(common::LogLevel::kError, "exchange log integrity failure: exchange halted",
              {{"reason", reason}});
  absl::Status s = queue_->Run([&](Db* db) {
    Stmt st(db, "INSERT INTO meta(key, value) VALUES('halted', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value");
    st.Bind(1, reason);
    return Done(st, "record halt");
  });
  if (!s.ok()) {
    common::Log(common::LogLevel::kError, "halt not recorded", {{"status", s.ToString()}});
  }
  if (listener) listener(reason);
}

void NoticeStore::SetHaltListener(std::function<void(const std::string&)> listener) {
  absl::MutexLock lock(&halt_mu_);
  halt_listener_ = std::move(listener);
}

absl::StatusOr<common::MerkleFrontier> NoticeStore::StoredFrontier(uint64_t size) {
  return ReadOnly([&](Db* db) { return MerkleLog::StoredFrontier(db, size); });
}

absl::Status NoticeStore::VerifyStored(common::MerkleFrontier& frontier, uint64_t end,
                                       const MerkleLog::EntryVisitor& visit) {
  return ReadOnly([&](Db* db) -> absl::Status {
    std::map<uint64_t, std::string> roots;
    {
      Stmt s(db, "SELECT size, root FROM checkpoint WHERE size > ? AND size <= ?");
      s.Bind(1, static_cast<int64_t>(frontier.size())).Bind(2, static_cast<int64_t>(end));
      while (s.Step()) roots[s.Int(0)] = std::string(s.Blob(1));
      RETURN_IF_ERROR(s.status("read checkpoints"));
    }
    int64_t last_micros = 0;
    if (frontier.size() > 0) {
      Stmt s(db, "SELECT bytes FROM log_leaf WHERE idx = ?");
      s.Bind(1, static_cast<int64_t>(frontier.size() - 1));
      v1::LogEntry previous;
      if (s.Step() && previous.ParseFromArray(s.Blob(0).data(), s.Blob(0).size())) {
        last_micros = common::EntryMicros(previous);
      }
      RETURN_IF_ERROR(s.status("read log leaf"));
    }
    return MerkleLog::VerifyStored(db, end, frontier, roots, last_micros, visit);
  });
}

absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> NoticeStore::ReadNotices(
    const std::string& peer, bool outbound, uint64_t first_seq, uint32_t limit,
    uint64_t max_bytes) {
  return ReadOnly([&](Db* db)
                      -> absl::StatusOr<std::vector<std::pair<uint64_t, std::string>>> {
    std::vector<std::pair<uint64_t, std::string>> out;
    // Outbound: what the destination was sent, its copy under a sharing policy where it has one.
    Stmt s(db, outbound ? "SELECT e.seq, coalesce(c.bytes, n.bytes), n.notice_id, "
                          "c.bytes IS NOT NULL FROM channel_entry e JOIN notice n "
                          "ON n.notice_id = e.notice_id LEFT JOIN shared_copy c "
                          "ON c.destination = e.destination AND c.seq = e.seq "
                          "WHERE e.destination = ? AND e.seq >= ? ORDER BY e.seq LIMIT ?"
                        : "SELECT channel_seq, bytes FROM inbox WHERE origin = ? AND "
                          "channel_seq >= ? ORDER BY channel_seq LIMIT ?");
    s.Bind(1, peer).Bind(2, static_cast<int64_t>(first_seq)).Bind(3, int64_t{limit});
    uint64_t bytes = 0;
    while (s.Step()) {
      const absl::string_view b = s.Blob(1);
      if (!out.empty() && bytes + b.size() > max_bytes) break;
      bytes += b.size() + 16;
      const uint64_t seq = static_cast<uint64_t>(s.Int(0));
      std::string body;
      if (outbound && s.Int(3) != 0) {
        ASSIGN_OR_RETURN(body, OpenCopy(options_.sealer.get(), b, peer, s.Text(2), seq));
      } else {
        ASSIGN_OR_RETURN(body, OpenBody(options_.sealer.get(), b,
                                        outbound ? NoticeContext(s.Text(2)) : InboxContext(peer, seq)));
      }
      out.emplace_back(s.Int(0), std::move(body));
    }
    RETURN_IF_ERROR(s.status("read notices"));
    return out;
  });
}

absl::StatusOr<v1::BatchManifest> NoticeStore::LastManifestReceived(const std::string& peer) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<v1::BatchManifest> {
    // The newest is the one ending highest: evidence_by_peer answers it without a scan.
    Stmt s(db, "SELECT message FROM evidence WHERE peer = ? AND kind = ? "
               "ORDER BY last_seq DESC, id DESC LIMIT 1");
    s.Bind(1, peer).Bind(2, int64_t{v1::Evidence::KIND_MANIFEST_RECEIVED});
    v1::BatchManifest m;
    if (s.Step() && m.ParseFromArray(s.Blob(0).data(), s.Blob(0).size())) return m;
    RETURN_IF_ERROR(s.status("read received manifest"));
    return absl::NotFoundError(absl::StrCat("no manifest received from ", peer));
  });
}

absl::Status NoticeStore::InsertEvidence(v1::Evidence::Kind kind, const std::string& peer,
                                         uint64_t first_seq, uint64_t last_seq,
                                         const std::string& digest, const v1::Signed& signed_message,
                                         uint64_t log_index) {
  Stmt& s = log_stmts_->insert_evidence;
  s.Bind(1, int64_t{kind})
      .Bind(2, peer)
      .Bind(3, static_cast<int64_t>(first_seq))
      .Bind(4, static_cast<int64_t>(last_seq))
      .BindBlob(5, digest)
      .BindBlob(6, signed_message.message())
      .BindBlob(7, signed_message.signature())
      .Bind(8, static_cast<int64_t>(log_index));
  return Done(s, "insert evidence");
}

absl::StatusOr<std::optional<v1::Signed>> NoticeStore::LogReceived(const std::string& origin,
                                                                   const v1::Batch& batch,
                                                                   int64_t now_micros,
                                                                   const Signer& sign_receipt) {
  const uint64_t first = batch.first_seq();
  const uint64_t last = first + batch.entries_size() - 1;
  const std::string manifest_digest = common::Sha256(batch.manifest().message());
  v1::LogEntry entry;
  entry.set_kind(v1::LogEntry::KIND_RECEIVED);
  entry.set_peer(origin);
  entry.set_digest(manifest_digest);
  entry.set_first_seq(first);
  entry.set_last_seq(last);
  uint64_t index = 0;
  // Test faults: a receiver that omits or duplicates its RECEIVED entry.
  if (!common::FaultHits("omit_received_log", first, last)) {
    ASSIGN_OR_RETURN(index, AppendEntry(entry));
    if (common::FaultHits("duplicate_received_log", first, last)) {
      v1::LogEntry again = entry;
      RETURN_IF_ERROR(AppendEntry(again).status());
    }
  }
  RETURN_IF_ERROR(InsertEvidence(v1::Evidence::KIND_MANIFEST_RECEIVED, origin, first, last,
                                 manifest_digest, batch.manifest(), index));
  if (common::FaultHits("forge_received", first, last)) {
    // Claims a batch the origin never signed: auditors must classify it UNSUPPORTED.
    v1::BatchManifest fake;
    fake.set_origin(origin);
    fake.set_destination(options_.self);
    fake.set_first_seq(last + 1000);
    fake.set_last_seq(last + 1000);
    fake.add_digests(common::Sha256("forged"));
    v1::Signed forged;
    forged.set_message(common::DeterministicBytes(fake));
    forged.set_signature(std::string(64, '\x42'));
    forged.set_signer(origin);
    v1::LogEntry e;
    e.set_kind(v1::LogEntry::KIND_RECEIVED);
    e.set_peer(origin);
    e.set_digest(common::Sha256(forged.message()));
    e.set_first_seq(last + 1000);
    e.set_last_seq(last + 1000);
    ASSIGN_OR_RETURN(uint64_t forged_index, AppendEntry(e));
    RETURN_IF_ERROR(InsertEvidence(v1::Evidence::KIND_MANIFEST_RECEIVED, origin, last + 1000,
                                   last + 1000, e.digest(), forged, forged_index));
  }
  if (common::FaultHits("drop_receipt", first, last)) return std::optional<v1::Signed>();
  v1::Receipt receipt;
  receipt.set_receiver(options_.self);
  receipt.set_origin(origin);
  receipt.set_manifest_digest(manifest_digest);
  receipt.set_first_seq(first);
  receipt.set_last_seq(last);
  receipt.set_log_index(index);
  *receipt.mutable_received_at() = TimeUtil::MicrosecondsToTimestamp(now_micros);
  v1::Signed signed_receipt;
  signed_receipt.set_message(common::DeterministicBytes(receipt));
  signed_receipt.set_signature(sign_receipt(signed_receipt.message()));
  signed_receipt.set_signer(options_.self);
  RETURN_IF_ERROR(InsertEvidence(v1::Evidence::KIND_RECEIPT_SENT, origin, first, last,
                                 common::Sha256(signed_receipt.message()), signed_receipt, index));
  return std::optional<v1::Signed>(signed_receipt);
}

absl::Status NoticeStore::RecordSent(const std::string& destination, const v1::BatchManifest& m,
                                     const v1::Signed& signed_manifest) {
  return AwaitWrite(
      [&](WriteDone done) { RecordSentAsync(destination, m, signed_manifest, std::move(done)); });
}

void NoticeStore::RecordSentAsync(const std::string& destination, const v1::BatchManifest& m,
                                  const v1::Signed& signed_manifest, WriteDone done) {
  if (!options_.log_enabled) {
    done(absl::OkStatus());
    return;
  }
  v1::LogEntry entry;
  entry.set_kind(v1::LogEntry::KIND_SENT);
  entry.set_peer(destination);
  entry.set_digest(common::Sha256(signed_manifest.message()));
  entry.set_first_seq(m.first_seq());
  entry.set_last_seq(m.last_seq());
  queue_->Submit(
      [this, entry = std::move(entry), signed_manifest](Db*) mutable -> absl::Status {
        ASSIGN_OR_RETURN(uint64_t index, AppendEntry(entry));
        return InsertEvidence(v1::Evidence::KIND_MANIFEST_SENT, entry.peer(), entry.first_seq(),
                              entry.last_seq(), entry.digest(), signed_manifest, index);
      },
      std::move(done), CommitQueue::Rerun::kSafe);
}

absl::StatusOr<std::string> NoticeStore::SentManifestDigest(const std::string& destination,
                                                            uint64_t first_seq, uint64_t last_seq) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::string> {
    Stmt s(db,
           "SELECT digest FROM evidence WHERE peer = ? AND kind = ? AND first_seq = ? AND "
           "last_seq = ? ORDER BY id DESC LIMIT 1");
    s.Bind(1, destination)
        .Bind(2, int64_t{v1::Evidence::KIND_MANIFEST_SENT})
        .Bind(3, static_cast<int64_t>(first_seq))
        .Bind(4, static_cast<int64_t>(last_seq));
    if (s.Step()) return std::string(s.Blob(0));
    RETURN_IF_ERROR(s.status("find sent manifest"));
    return absl::NotFoundError(absl::StrCat("no manifest sent to ", destination, " for ",
                                            first_seq, "..", last_seq));
  });
}

absl::StatusOr<std::vector<v1::Evidence>> NoticeStore::SentAfter(const std::string& destination,
                                                                 uint64_t after, int limit) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<v1::Evidence>> {
    const std::string sql = absl::StrCat("SELECT ", kEvidenceColumns,
                                         " FROM evidence WHERE peer = ? AND kind = ? AND "
                                         "last_seq > ? ORDER BY last_seq LIMIT ?");
    Stmt s(db, sql.c_str());
    s.Bind(1, destination)
        .Bind(2, int64_t{v1::Evidence::KIND_MANIFEST_SENT})
        .Bind(3, static_cast<int64_t>(after))
        .Bind(4, int64_t{limit});
    std::vector<v1::Evidence> out;
    while (s.Step()) {
      ASSIGN_OR_RETURN(out.emplace_back(), EvidenceFromRow(s, options_.self, destination, options_.sealer.get()));
    }
    RETURN_IF_ERROR(s.status("read sent manifests"));
    return out;
  });
}

absl::Status NoticeStore::RecordReceipt(const std::string& destination, const v1::Receipt& receipt,
                                        const v1::Signed& signed_receipt) {
  return AwaitWrite([&](WriteDone done) {
    RecordReceiptAsync(destination, receipt, signed_receipt, std::move(done));
  });
}

void NoticeStore::RecordReceiptAsync(const std::string& destination, const v1::Receipt& receipt,
                                     const v1::Signed& signed_receipt, WriteDone done) {
  v1::LogEntry entry;
  entry.set_kind(v1::LogEntry::KIND_RECEIPT_RECEIVED);
  entry.set_peer(destination);
  entry.set_digest(receipt.manifest_digest());
  entry.set_first_seq(receipt.first_seq());
  entry.set_last_seq(receipt.last_seq());
  entry.set_receipt_digest(common::Sha256(signed_receipt.message()));
  entry.set_peer_log_index(receipt.log_index());
  queue_->Submit(
      [this, entry = std::move(entry), signed_receipt](Db*) mutable -> absl::Status {
        ASSIGN_OR_RETURN(uint64_t index, AppendEntry(entry));
        RETURN_IF_ERROR(InsertEvidence(v1::Evidence::KIND_RECEIPT_RECEIVED, entry.peer(),
                                       entry.first_seq(), entry.last_seq(),
                                       entry.receipt_digest(), signed_receipt, index));
        Stmt& s = log_stmts_->raise_acked;
        s.Bind(1, static_cast<int64_t>(entry.last_seq()))
            .Bind(2, entry.peer())
            .Bind(3, static_cast<int64_t>(entry.last_seq()));
        return Done(s, "raise acked");
      },
      [this, destination, last = receipt.last_seq(), done = std::move(done)](const absl::Status& s) {
        if (s.ok()) CommittedAcked(destination, last);
        done(s);
      },
      CommitQueue::Rerun::kSafe);
}

absl::StatusOr<std::vector<std::pair<uint64_t, v1::Signed>>> NoticeStore::ReceiptsSent(
    const std::string& origin, uint64_t after) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<std::pair<uint64_t, v1::Signed>>> {
    std::vector<std::pair<uint64_t, v1::Signed>> out;
    Stmt s(db,
           "SELECT last_seq, message, signature FROM evidence WHERE peer = ? AND kind = ? AND "
           "last_seq > ? ORDER BY last_seq");
    s.Bind(1, origin).Bind(2, int64_t{v1::Evidence::KIND_RECEIPT_SENT}).Bind(3, static_cast<int64_t>(after));
    while (s.Step()) {
      v1::Signed signed_receipt;
      signed_receipt.set_message(std::string(s.Blob(1)));
      signed_receipt.set_signature(std::string(s.Blob(2)));
      signed_receipt.set_signer(options_.self);
      out.emplace_back(s.Int(0), std::move(signed_receipt));
    }
    RETURN_IF_ERROR(s.status("read receipts sent"));
    return out;
  });
}

std::pair<uint64_t, std::string> NoticeStore::LogHead() { return log_->Committed(); }

absl::StatusOr<std::vector<std::string>> NoticeStore::ReadEntries(uint64_t start, uint64_t end) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<std::string>> {
    std::vector<std::string> out;
    Stmt s(db, "SELECT idx, bytes FROM log_leaf WHERE idx >= ? AND idx < ? ORDER BY idx");
    s.Bind(1, static_cast<int64_t>(start)).Bind(2, static_cast<int64_t>(end));
    while (s.Step()) {
      if (static_cast<uint64_t>(s.Int(0)) != start + out.size()) {
        return absl::DataLossError(absl::StrCat("exchange log: entry ", start + out.size(),
                                                " is missing"));
      }
      out.emplace_back(s.Blob(1));
    }
    RETURN_IF_ERROR(s.status("read log entries"));
    return out;
  });
}

absl::StatusOr<std::vector<std::string>> NoticeStore::InclusionProof(uint64_t index,
                                                                     uint64_t tree_size) {
  if (tree_size > LogHead().first) {
    return absl::OutOfRangeError(absl::StrCat("tree_size: ", tree_size, " is beyond the log size ",
                                              LogHead().first));
  }
  if (index >= tree_size) {
    return absl::OutOfRangeError(
        absl::StrCat("index: ", index, " is not below tree_size ", tree_size));
  }
  return ReadOnly([&](Db* db) {
    return common::InclusionProof(index, tree_size, [db](uint64_t b, uint64_t e) {
      return common::SubtreeHash(b, e, [db](uint64_t pb, uint64_t pe) {
        return MerkleLog::PerfectSubtreeHash(db, pb, pe);
      });
    });
  });
}

absl::StatusOr<std::vector<std::string>> NoticeStore::ConsistencyProof(uint64_t first,
                                                                       uint64_t second) {
  if (second > LogHead().first) {
    return absl::OutOfRangeError(
        absl::StrCat("second: ", second, " is beyond the log size ", LogHead().first));
  }
  if (first > second) {
    return absl::InvalidArgumentError(absl::StrCat("first: ", first, " is greater than second ", second));
  }
  return ReadOnly([&](Db* db) {
    return common::ConsistencyProof(first, second, [db](uint64_t b, uint64_t e) {
      return common::SubtreeHash(b, e, [db](uint64_t pb, uint64_t pe) {
        return MerkleLog::PerfectSubtreeHash(db, pb, pe);
      });
    });
  });
}

absl::StatusOr<std::vector<v1::Evidence>> NoticeStore::ReadEvidence(
    const std::string& peer, v1::Evidence::Kind kind1, v1::Evidence::Kind kind2, uint64_t after,
    uint32_t limit, uint64_t max_bytes) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<std::vector<v1::Evidence>> {
    std::vector<v1::Evidence> out;
    const std::string sql = absl::StrCat("SELECT ", kEvidenceColumns, " FROM evidence WHERE peer = ? "
                                         "AND kind IN (?, ?) AND id > ? ORDER BY id LIMIT ?");
    Stmt s(db, sql.c_str());
    s.Bind(1, peer)
        .Bind(2, int64_t{kind1})
        .Bind(3, int64_t{kind2})
        .Bind(4, static_cast<int64_t>(after))
        .Bind(5, int64_t{limit});
    uint64_t bytes = 0;
    while (s.Step()) {
      const size_t size = s.Blob(4).size();
      if (!out.empty() && bytes + size > max_bytes) break;
      bytes += size + 100;
      ASSIGN_OR_RETURN(out.emplace_back(), EvidenceFromRow(s, options_.self, peer, options_.sealer.get()));
    }
    RETURN_IF_ERROR(s.status("read evidence"));
    return out;
  });
}

absl::StatusOr<v1::NoticeEvidence> NoticeStore::NoticeEvidence(const std::string& notice_id,
                                                                const std::string& origin) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<v1::NoticeEvidence> {
    v1::NoticeEvidence out;
    // (peer, seq, outbound) of each channel the notice travelled on.
    std::vector<std::tuple<std::string, uint64_t, bool>> channels;
    bool found = false;
    if (origin.empty() || origin == options_.self) {
      Stmt n(db, "SELECT bytes, deliveries FROM notice WHERE notice_id = ?");
      n.Bind(1, notice_id);
      if (n.Step()) {
        found = true;
        ASSIGN_OR_RETURN(*out.mutable_notice(),
                         OpenBody(options_.sealer.get(), n.Blob(0), NoticeContext(notice_id)));
        for (absl::string_view d : absl::StrSplit(n.Text(1), ',', absl::SkipEmpty())) {
          std::pair<absl::string_view, absl::string_view> kv = absl::StrSplit(d, ':');
          uint64_t seq = 0;
          if (absl::SimpleAtoi(kv.second, &seq)) channels.emplace_back(std::string(kv.first), seq, true);
        }
      }
      RETURN_IF_ERROR(n.status("read notice"));
    }
    if (!found) {
      // A full scan of the inbox: this is an auditor's query, and an index by notice id would
      // cost every received notice one more insert on the hot path.
      Stmt i(db, origin.empty()
                     ? "SELECT origin, channel_seq, bytes FROM inbox WHERE notice_id = ? AND ? = ''"
                     : "SELECT origin, channel_seq, bytes FROM inbox WHERE notice_id = ? AND origin = ?");
      i.Bind(1, notice_id).Bind(2, origin);
      if (i.Step()) {
        found = true;
        channels.emplace_back(i.Text(0), i.Int(1), false);
        ASSIGN_OR_RETURN(*out.mutable_notice(),
                         OpenBody(options_.sealer.get(), i.Blob(2), InboxContext(i.Text(0), i.Int(1))));
      }
      RETURN_IF_ERROR(i.status("read inbox"));
    }
    out.set_purged(found && out.notice().empty());  // retention removed the body
    if (!found) {
      return absl::NotFoundError(absl::StrCat("notice_id: ", notice_id, " is not held here"));
    }
    for (const auto& [peer, seq, outbound] : channels) {
      auto* ch = out.add_channels();
      ch->set_origin(outbound ? options_.self : peer);
      ch->set_destination(outbound ? peer : options_.self);
      ch->set_seq(seq);
      const std::string sql = absl::StrCat(
          "SELECT ", kEvidenceColumns, " FROM evidence WHERE peer = ? AND kind IN (?, ?) AND "
          "first_seq <= ? AND last_seq >= ? ORDER BY id");
      Stmt e(db, sql.c_str());
      e.Bind(1, peer)
          .Bind(2, int64_t{outbound ? v1::Evidence::KIND_MANIFEST_SENT : v1::Evidence::KIND_MANIFEST_RECEIVED})
          .Bind(3, int64_t{outbound ? v1::Evidence::KIND_RECEIPT_RECEIVED : v1::Evidence::KIND_RECEIPT_SENT})
          .Bind(4, static_cast<int64_t>(seq))
          .Bind(5, static_cast<int64_t>(seq));
      while (e.Step()) {
        ASSIGN_OR_RETURN(*ch->add_evidence(), EvidenceFromRow(e, options_.self, peer, options_.sealer.get()));
      }
      RETURN_IF_ERROR(e.status("read evidence"));
    }
    return out;
  });
}

absl::Status NoticeStore::StoreCheckpoint(const StoredCheckpoint& c) {
  return queue_->Run([&](Db*) {
    Stmt& s = log_stmts_->insert_checkpoint;
    s.Bind(1, static_cast<int64_t>(c.size))
        .BindBlob(2, c.root)
        .BindBlob(3, c.note)
        .Bind(4, absl::ToUnixMicros(common::Now()));
    return Done(s, "insert checkpoint");
  }, nullptr, CommitQueue::Rerun::kSafe);
}

absl::StatusOr<StoredCheckpoint> NoticeStore::CheckpointAt(uint64_t size) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<StoredCheckpoint> {
    StoredCheckpoint c;
    {
      Stmt s(db,
             size == UINT64_MAX
                 ? "SELECT size, root, note, created_at FROM checkpoint WHERE size >= ? "
                   "ORDER BY size DESC LIMIT 1"
                 : "SELECT size, root, note, created_at FROM checkpoint WHERE size = ?");
      s.Bind(1, size == UINT64_MAX ? int64_t{0} : static_cast<int64_t>(size));
      if (!s.Step()) {
        RETURN_IF_ERROR(s.status("read checkpoint"));
        return absl::NotFoundError("no checkpoint signed yet");
      }
      c.size = s.Int(0);
      c.root = std::string(s.Blob(1));
      c.note = std::string(s.Blob(2));
      c.created_at = absl::FromUnixMicros(s.Int(3));
    }
    Stmt s(db, "SELECT line FROM cosignature WHERE size = ? ORDER BY witness");
    s.Bind(1, static_cast<int64_t>(c.size));
    while (s.Step()) c.cosignatures.emplace_back(s.Blob(0));
    RETURN_IF_ERROR(s.status("read cosignatures"));
    return c;
  });
}

absl::StatusOr<StoredCheckpoint> NoticeStore::LatestCheckpoint() { return CheckpointAt(UINT64_MAX); }

absl::Status NoticeStore::AddCosignature(uint64_t size, const std::string& witness,
                                         const std::string& line) {
  return queue_->Run([&](Db*) {
    Stmt& s = log_stmts_->insert_cosignature;
    s.Bind(1, static_cast<int64_t>(size)).Bind(2, witness).BindBlob(3, line);
    return Done(s, "insert cosignature");
  }, nullptr, CommitQueue::Rerun::kSafe);
}

absl::StatusOr<common::Checkpoint> NoticeStore::Witnessed(const std::string& peer,
                                                          std::string* note) {
  return ReadOnly([&](Db* db) -> absl::StatusOr<common::Checkpoint> {
    Stmt s(db, "SELECT size, root, note FROM witnessed WHERE peer = ?");
    s.Bind(1, peer);
    if (!s.Step()) {
      RETURN_IF_ERROR(s.status("read witnessed"));
      return absl::NotFoundError(absl::StrCat("no checkpoint of ", peer, " witnessed yet"));
    }
    common::Checkpoint c;
    c.size = s.Int(0);
    c.root = std::string(s.Blob(1));
    if (note != nullptr) *note = std::string(s.Blob(2));
    return c;
  });
}

absl::Status NoticeStore::RecordCosigned(const std::string& peer, const common::Checkpoint& c,
                                         const std::string& note_body) {
  return queue_->Run([&](Db*) -> absl::Status {
    v1::LogEntry entry;
    entry.set_kind(v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED);
    entry.set_peer(peer);
    entry.set_peer_checkpoint(note_body);
    entry.set_first_seq(0);
    entry.set_last_seq(c.size);
    entry.set_digest(c.root);
    RETURN_IF_ERROR(AppendEntry(entry).status());
    Stmt& s = log_stmts_->upsert_witnessed;
    s.Bind(1, peer).Bind(2, static_cast<int64_t>(c.size)).BindBlob(3, c.root).BindBlob(4, note_body);
    return Done(s, "record witnessed");
  }, nullptr, CommitQueue::Rerun::kSafe);
}

}  // namespace caseway::server
