// Reconciliation of two nodes' exchange logs (docs/exchange-log.md, "Reconciliation").
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/audit/auditor.h"
#include "client/audit/evidence.h"
#include "client/audit/witnesses.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/grpc_status.h"
#include "common/log_entry.h"
#include "common/merkle.h"
#include "common/status_macros.h"

namespace caseway::client::audit {

using common::FromGrpcStatus;

namespace {

// Batch is a signed manifest as recorded in one node's log.
struct Batch {
  uint64_t log_index = 0;
  absl::Time time;
  std::string digest;  // of the manifest bytes
  v1::Signed signed_manifest;
  v1::BatchManifest manifest;
  bool signature_valid = false;
  std::string SeqDigest(uint64_t seq) const { return audit::SeqDigest(manifest, seq); }
};

// ReceiptRec is a signed receipt recorded in the origin's log.
struct ReceiptRec {
  uint64_t log_index = 0;
  v1::Signed signed_receipt;
  v1::Receipt receipt;
  bool signature_valid = false;
};

// How long an origin may take from signing a manifest to committing its SENT entry.
constexpr absl::Duration kSentCommitSlack = absl::Seconds(10);

absl::Time TimeOf(const v1::LogEntry& e) { return common::TimeOf(e.time()); }

}  // namespace

absl::StatusOr<std::vector<v1::Evidence>> FetchEvidence(NodeLog& log, const std::string& peer,
                                                        v1::GetEvidenceRequest::Direction dir) {
  std::vector<v1::Evidence> out;
  v1::GetEvidenceRequest req;
  req.set_purpose(kAuditPurpose);
  req.set_peer(peer);
  req.set_direction(dir);
  for (;;) {
    v1::GetEvidenceResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    RETURN_IF_ERROR(FromGrpcStatus(log.stub->GetEvidence(&ctx, req, &resp)));
    for (auto& e : *resp.mutable_evidence()) out.push_back(std::move(e));
    if (resp.next() == 0 || resp.next() <= req.after()) return out;
    req.set_after(resp.next());
  }
}

absl::Status Auditor::ReconcileChannel(NodeLog& origin, NodeLog& dest, ReconcileReport& report) {
  const std::string& x = origin.jurisdiction;
  const std::string& y = dest.jurisdiction;
  RETURN_IF_ERROR(directory_.Listed(x));  // both must be listed in the directory
  RETURN_IF_ERROR(directory_.Listed(y));

  // Evidence by digest.
  std::map<std::string, v1::Signed> sent_evidence, received_evidence, receipt_evidence;
  ASSIGN_OR_RETURN(auto out_ev, FetchEvidence(origin, y, v1::GetEvidenceRequest::DIRECTION_OUTBOUND));
  std::map<std::string, uint64_t> sent_evidence_index;  // manifest digest -> the index it names
  for (const auto& e : out_ev) {
    if (e.kind() == v1::Evidence::KIND_MANIFEST_SENT) {
      sent_evidence[common::Sha256(e.signed_().message())] = e.signed_();
      sent_evidence_index[common::Sha256(e.signed_().message())] = e.log_index();
    } else if (e.kind() == v1::Evidence::KIND_RECEIPT_RECEIVED) {
      receipt_evidence[common::Sha256(e.signed_().message())] = e.signed_();
    }
  }
  ASSIGN_OR_RETURN(auto in_ev, FetchEvidence(dest, x, v1::GetEvidenceRequest::DIRECTION_INBOUND));
  for (const auto& e : in_ev) {
    if (e.kind() == v1::Evidence::KIND_MANIFEST_RECEIVED) {
      received_evidence[common::Sha256(e.signed_().message())] = e.signed_();
    }
  }

  auto make_batch = [&](const v1::LogEntry& entry, uint64_t position,
                        const std::map<std::string, v1::Signed>& ev, Batch& b) {
    b.log_index = position;
    b.time = TimeOf(entry);
    b.digest = entry.digest();
    // Until a valid manifest says otherwise, the claimed range (one sequence if it is not sane).
    b.manifest.set_first_seq(entry.first_seq());
    b.manifest.set_last_seq(SaneRange(entry.first_seq(), entry.last_seq()) ? entry.last_seq()
                                                                            : entry.first_seq());
    auto it = ev.find(entry.digest());
    if (it == ev.end()) return;  // the log names a manifest the node cannot show
    b.signed_manifest = it->second;
    auto opened = OpenManifest(it->second, directory_, x, y);
    b.signature_valid = opened && opened->first_seq() == entry.first_seq() &&
                        opened->last_seq() == entry.last_seq();
    if (b.signature_valid) b.manifest = std::move(*opened);
  };

  // The origin's view: published notices for y, manifests sent, receipts received.
  struct Published {
    uint64_t log_index;
    std::string notice_id;
    absl::Time time;
  };
  std::map<std::string, Published> published;  // notice digest -> entry
  std::vector<Batch> sent;
  std::vector<ReceiptRec> receipts;
  for (uint64_t i = 0; i < origin.parsed.size(); ++i) {
    const v1::LogEntry& e = origin.parsed[i];
    if (e.kind() == v1::LogEntry::KIND_PUBLISHED &&
        std::find(e.destinations().begin(), e.destinations().end(), y) != e.destinations().end()) {
      // What y was sent: its copy under the origin's sharing policy, where it has one.
      published[common::DestinationDigestFor(e, y)] = {i, e.notice_id(), TimeOf(e)};
    } else if (e.kind() == v1::LogEntry::KIND_SENT && e.peer() == y) {
      make_batch(e, i, sent_evidence, sent.emplace_back());
    } else if (e.kind() == v1::LogEntry::KIND_RECEIPT_RECEIVED && e.peer() == y) {
      ReceiptRec& r = receipts.emplace_back();
      r.log_index = i;
      auto it = receipt_evidence.find(e.receipt_digest());
      if (it != receipt_evidence.end()) {
        r.signed_receipt = it->second;
        auto opened = OpenReceipt(it->second, directory_, x, y);
        r.signature_valid = opened.has_value();
        if (opened) {
          r.receipt = std::move(*opened);
        } else {
          r.receipt.ParseFromString(it->second.message());  // for the report only
        }
      }
    }
  }
  // Manifests the origin's signed log shows it had sent: named by a SENT entry, or receipted.
  std::set<std::string> logged_sent, logged_receipted;
  for (const v1::LogEntry& e : origin.parsed) {
    if (e.peer() != y) continue;
    if (e.kind() == v1::LogEntry::KIND_SENT) logged_sent.insert(e.digest());
    if (e.kind() == v1::LogEntry::KIND_RECEIPT_RECEIVED) logged_receipted.insert(e.digest());
  }
  // The destination's view: manifests received from x.
  std::vector<Batch> received;
  for (uint64_t i = 0; i < dest.parsed.size(); ++i) {
    const v1::LogEntry& e = dest.parsed[i];
    if (e.kind() == v1::LogEntry::KIND_RECEIVED && e.peer() == x) {
      make_batch(e, i, received_evidence, received.emplace_back());
    }
  }

  // Index by sequence.
  std::map<uint64_t, std::vector<const Batch*>> sent_by_seq, recv_by_seq;
  std::map<uint64_t, std::vector<const ReceiptRec*>> receipt_by_seq;
  std::set<uint64_t> seqs;
  for (const Batch& b : sent) {
    for (uint64_t s = b.manifest.first_seq(); s <= b.manifest.last_seq() && s != 0; ++s) {
      sent_by_seq[s].push_back(&b);
      seqs.insert(s);
    }
  }
  for (const Batch& b : received) {
    for (uint64_t s = b.manifest.first_seq(); s <= b.manifest.last_seq() && s != 0; ++s) {
      recv_by_seq[s].push_back(&b);
      seqs.insert(s);
    }
  }
  for (const ReceiptRec& r : receipts) {
    if (!r.signature_valid) {
      Row row{x, y, r.receipt.first_seq() == 0 ? 1 : r.receipt.first_seq(), "", "UNSUPPORTED",
              absl::StrCat(x, " records a receipt of ", y, " (entry ", r.log_index,
                           ") whose signature does not verify")};
      row.bundle = NewBundle(row.status, row.detail, {&origin});
      row.bundle.set_origin(x);
      row.bundle.set_destination(y);
      row.bundle.set_seq(row.seq);
      RETURN_IF_ERROR(AddEntry(origin, r.log_index, row.bundle));
      *row.bundle.add_receipts() = r.signed_receipt;
      report.rows.push_back(std::move(row));
      continue;
    }
    for (uint64_t s = r.receipt.first_seq(); s <= r.receipt.last_seq(); ++s) {
      receipt_by_seq[s].push_back(&r);
      seqs.insert(s);
    }
  }

  std::set<std::string> delivered_digests;  // notice digests covered by some manifest
  // How old the origin's entry at `index`, claimed at `claim`, is: on the origin's own clock (so
  // a skewed clock does not age it), and no older than since the destination last cosigned the
  // origin's log without it (on the destination's clock), so an origin cannot age its claims.
  Witnesses seen_by_dest;
  for (const v1::LogEntry& e : dest.parsed) {
    if (e.kind() == v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED && e.peer() == x) {
      seen_by_dest.Add(e.last_seq(), TimeOf(e));
    }
  }
  seen_by_dest.Seal();
  const absl::Time origin_now = origin.NodeNow(), dest_now = dest.NodeNow();
  auto age = [&](uint64_t index, absl::Time claim) {
    absl::Duration a = origin_now - claim;
    const absl::Time without = seen_by_dest.Bound(index).first;
    if (without != absl::InfinitePast()) a = std::min(a, dest_now - without);
    return std::max(a, absl::ZeroDuration());
  };
  auto ago = [&](absl::Duration a) {
    return absl::StrCat(absl::FormatDuration(absl::Trunc(a, absl::Seconds(1))), " ago by ", x,
                        "'s clock");
  };
  for (uint64_t s : seqs) {
    const auto& sb = sent_by_seq[s];
    const auto& rb = recv_by_seq[s];
    std::vector<const Batch*> valid_recv, invalid_recv;
    for (const Batch* b : rb) (b->signature_valid ? valid_recv : invalid_recv).push_back(b);
    Row row{x, y, s, "", "", ""};
    std::vector<std::pair<NodeLog*, uint64_t>> entries;
    std::vector<v1::Signed> manifests, receipts_used;
    // Every digest any valid manifest gives this seq: the notice is accounted for here (even when
    // the two sides disagree on which content it was).
    for (const auto* list : {&sb, &rb}) {
      for (const Batch* b : *list) {
        if (!b->signature_valid) continue;
        const std::string d = b->SeqDigest(s);
        delivered_digests.insert(d);
        if (auto it = published.find(d); it != published.end() && row.notice_id.empty()) {
          row.notice_id = it->second.notice_id;
        }
      }
    }
    for (const Batch* b : sb) {
      entries.emplace_back(&origin, b->log_index);
      manifests.push_back(b->signed_manifest);
    }
    for (const Batch* b : rb) {
      entries.emplace_back(&dest, b->log_index);
      manifests.push_back(b->signed_manifest);
    }
    if (valid_recv.size() > 1) {
      row.status = "DUPLICATE";
      row.detail = absl::StrCat(y, " records seq ", s, " as received ", valid_recv.size(), " times");
    } else if (valid_recv.empty() && !invalid_recv.empty()) {
      row.status = "UNSUPPORTED";
      row.detail = absl::StrCat(y, " records seq ", s, " as received from ", x,
                                " without a manifest signed by ", x);
    } else if (valid_recv.size() == 1) {
      const Batch* r = valid_recv[0];
      const std::string d = r->SeqDigest(s);
      std::vector<const Batch*> valid_sent;
      for (const Batch* b : sb) {
        if (b->signature_valid) valid_sent.push_back(b);
      }
      const absl::Time created = common::TimeOf(r->manifest.created_at());
      // The origin appends SENT and commits it before it sends, so its signed checkpoint must
      // already cover the SENT entry (no --grace) when it covers the receipt for that batch, when
      // its evidence names a log index below the checkpoint, or when it was signed well after the
      // manifest (both times by the origin's own clock).
      auto ev_index = sent_evidence_index.find(r->digest);
      const bool covered =
          logged_receipted.count(r->digest) > 0 ||
          (ev_index != sent_evidence_index.end() && ev_index->second < origin.checkpoint.size) ||
          (origin.checkpoint.time > 0 &&
           absl::FromUnixSeconds(origin.checkpoint.time) - created > kSentCommitSlack);
      if (valid_sent.empty() && origin_now - created < options_.grace && !covered) {
        row.status = "PENDING";
        row.detail = absl::StrCat("received; the sending is younger than --grace and may be past ",
                                  x, "'s checkpoint");
      } else if (valid_sent.empty()) {
        row.status = "SENDER_OMITTED";
        row.detail = absl::StrCat(
            y, " holds ", x, "'s signed manifest for seq ", s, " but ", x,
            logged_sent.count(r->digest) ? "'s log names it in a SENT entry without the signed "
                                           "manifest to show for it"
                                         : "'s log records no sending of it",
            covered ? " (its signed checkpoint already covers the batch's receipt or sending)"
                    : "");
      } else if (std::any_of(valid_sent.begin(), valid_sent.end(),
                             [&](const Batch* b) { return b->SeqDigest(s) != d; })) {
        row.status = "CONFLICT";
        row.detail = absl::StrCat(x, " logged other content for seq ", s, " than ", y,
                                  " received (both manifests signed by ", x, ")");
      } else {
        const ReceiptRec* proof = nullptr;
        // The receipt must name this manifest and the receiver's RECEIVED entry for it.
        for (const ReceiptRec* rr : receipt_by_seq[s]) {
          if (rr->receipt.manifest_digest() == r->digest && rr->receipt.log_index() == r->log_index) {
            proof = rr;
          }
        }
        if (proof != nullptr) {
          row.status = "PROVEN";
          row.detail = absl::StrCat("sent, received and receipted (", y, " entry ",
                                    proof->receipt.log_index(), ")");
          entries.emplace_back(&origin, proof->log_index);
          receipts_used.push_back(proof->signed_receipt);
        } else {
          row.status = "MATCHED";
          row.detail = "sent and received with equal digests; no receipt recorded";
        }
      }
    } else {  // nothing received
      bool after_snapshot = false;
      for (const ReceiptRec* rr : receipt_by_seq[s]) {
        after_snapshot |= rr->receipt.log_index() >= dest.checkpoint.size;
      }
      if (after_snapshot) {
        row.status = "PENDING";
        row.detail = absl::StrCat("receipted; ", y, "'s entry lies past its audited checkpoint");
      } else if (!receipt_by_seq[s].empty()) {
        row.status = "RECEIVER_OMITTED";
        row.detail = absl::StrCat(y, " signed a receipt for seq ", s, " but its log records no "
                                  "receiving of it");
        entries.emplace_back(&origin, receipt_by_seq[s][0]->log_index);
        receipts_used.push_back(receipt_by_seq[s][0]->signed_receipt);
      } else {
        const absl::Duration a =
            sb.empty() ? absl::ZeroDuration() : age(sb.back()->log_index, sb.back()->time);
        row.status = a < options_.grace ? "PENDING" : "UNDELIVERED";
        row.detail = absl::StrCat("sent ", ago(a), ", not received");
      }
    }
    if (IsProblem(row.status) || options_.bundle_all) {
      row.bundle = NewBundle(row.status, row.detail, {&origin, &dest});
      row.bundle.set_origin(x);
      row.bundle.set_destination(y);
      row.bundle.set_seq(s);
      row.bundle.set_notice_id(row.notice_id);
      for (auto& [log, index] : entries) RETURN_IF_ERROR(AddEntry(*log, index, row.bundle));
      for (auto& m : manifests) *row.bundle.add_manifests() = m;
      for (auto& r : receipts_used) *row.bundle.add_receipts() = r;
    }
    report.rows.push_back(std::move(row));
  }

  // Published for y but in no manifest at all: not yet sent.
  for (const auto& [digest, p] : published) {
    if (delivered_digests.count(digest)) continue;
    const absl::Duration a = age(p.log_index, p.time);
    Row row{x, y, 0, p.notice_id, a < options_.grace ? "PENDING" : "UNDELIVERED",
            absl::StrCat("published ", ago(a), ", never sent")};
    if (IsProblem(row.status) || options_.bundle_all) {
      row.bundle = NewBundle(row.status, row.detail, {&origin, &dest});
      row.bundle.set_origin(x);
      row.bundle.set_destination(y);
      row.bundle.set_notice_id(p.notice_id);
      RETURN_IF_ERROR(AddEntry(origin, p.log_index, row.bundle));
    }
    report.rows.push_back(std::move(row));
  }
  return absl::OkStatus();
}

absl::Status Auditor::ReconcileQueries(NodeLog& asker, NodeLog& answerer, ReconcileReport& report) {
  const std::string& x = asker.jurisdiction;
  const std::string& y = answerer.jurisdiction;
  // The signed answers x keeps, by digest.
  std::map<std::string, v1::Signed> answers;
  // Answers whose message x's retention period removed (personal data): only their digests.
  std::set<std::string> purged;
  ASSIGN_OR_RETURN(auto ev, FetchEvidence(asker, y, v1::GetEvidenceRequest::DIRECTION_QUERIES));
  for (const auto& e : ev) {
    if (e.kind() != v1::Evidence::KIND_QUERY_ANSWER_RECEIVED) continue;
    if (!e.purged_digest().empty()) {
      purged.insert(e.purged_digest());
    } else {
      answers[common::Sha256(e.signed_().message())] = e.signed_();
    }
  }
  std::map<uint64_t, const v1::LogEntry*> answered;  // y's answers to x, by y's index
  for (uint64_t i = 0; i < answerer.parsed.size(); ++i) {
    const v1::LogEntry& e = answerer.parsed[i];
    if (e.kind() == v1::LogEntry::KIND_QUERY_ANSWERED && e.peer() == x) answered[i] = &e;
  }
  auto add = [&](Row row, const std::vector<std::pair<NodeLog*, uint64_t>>& entries,
                 const v1::Signed* answer) -> absl::Status {
    if (IsProblem(row.status) || options_.bundle_all) {
      row.bundle = NewBundle(row.status, row.detail, {&asker, &answerer});
      row.bundle.set_origin(x);
      row.bundle.set_destination(y);
      row.bundle.set_notice_id(row.notice_id);
      for (const auto& [log, index] : entries) RETURN_IF_ERROR(AddEntry(*log, index, row.bundle));
      if (answer != nullptr) *row.bundle.add_answers() = *answer;
    }
    report.rows.push_back(std::move(row));
    return absl::OkStatus();
  };
  std::set<uint64_t> paired;
  for (uint64_t i = 0; i < asker.parsed.size(); ++i) {
    const v1::LogEntry& e = asker.parsed[i];
    if (e.kind() != v1::LogEntry::KIND_QUERY_ASKED || e.peer() != y) continue;
    Row row{x, y, 0, absl::StrCat("query-", x, "-", i), "", "", {}};
    auto it = answers.find(e.digest());
    std::optional<v1::QueryAnswer> a;
    if (it != answers.end()) a = OpenAnswer(it->second, directory_, x, y);
    const v1::Signed* shown = it == answers.end() ? nullptr : &it->second;
    // A purged answer is paired by the digests both logs record; its signature cannot be shown.
    const bool was_purged = it == answers.end() && purged.count(e.digest()) > 0;
    if (!was_purged && (!a || a->request_digest() != e.request_digest() || a->log_index() != e.peer_log_index())) {
      row.status = "UNSUPPORTED";
      row.detail = absl::StrCat(x, " records an answer of ", y, " (entry ", i, ") ",
                                shown == nullptr ? "without the signed answer to show for it"
                                                 : "whose signed answer does not verify or match");
      RETURN_IF_ERROR(add(std::move(row), {{&asker, i}}, shown));
      continue;
    }
    auto match = answered.find(e.peer_log_index());
    if (match != answered.end() && match->second->digest() == e.digest() &&
        match->second->request_digest() == e.request_digest()) {
      paired.insert(match->first);
      row.status = "ANSWERED";
      row.detail = was_purged
                       ? absl::StrCat(y, " answered (its entry ", match->first, "); ", x,
                                      " purged the answer under its retention period, and both "
                                      "logs record its digest")
                       : absl::StrCat(y, " answered with ", a->notices_size(), " notice",
                                      a->notices_size() == 1 ? "" : "s", " (its entry ",
                                      match->first, ")");
      RETURN_IF_ERROR(add(std::move(row), {{&asker, i}, {&answerer, match->first}}, shown));
    } else if (e.peer_log_index() >= answerer.checkpoint.size) {
      row.status = "PENDING";
      row.detail = absl::StrCat(y, "'s answer names its entry ", e.peer_log_index(),
                                ", past its audited checkpoint");
      RETURN_IF_ERROR(add(std::move(row), {{&asker, i}}, shown));
    } else {
      row.status = "ANSWER_NOT_LOGGED";
      row.detail = absl::StrCat(y, " signed an answer to ", x, "'s query naming its log entry ",
                                e.peer_log_index(), ", which does not record that answer");
      // y's entry at that index, proven, shows offline what it is instead.
      RETURN_IF_ERROR(add(std::move(row), {{&asker, i}, {&answerer, e.peer_log_index()}}, shown));
    }
  }
  const absl::Time answerer_now = answerer.NodeNow();
  for (const auto& [index, e] : answered) {
    if (paired.count(index)) continue;
    const absl::Duration age = answerer_now - TimeOf(*e);
    Row row{x, y, 0, absl::StrCat("query-", y, "-", index), "", "", {}};
    if (age < options_.grace) {
      row.status = "PENDING";
      row.detail = absl::StrCat(y, " answered ", x, " (its entry ", index,
                                "); the question may be past ", x, "'s checkpoint");
    } else {
      row.status = "QUESTION_NOT_LOGGED";
      row.detail = absl::StrCat(y, " answered a query of ", x, " (its entry ", index, ") that ", x,
                                "'s log does not record: the answer was lost on the way or came "
                                "too late, ", x, " refused it as unverifiable, its node failed "
                                "before recording it, or it hides the question");
    }
    RETURN_IF_ERROR(add(std::move(row), {{&answerer, index}}, nullptr));
  }
  return absl::OkStatus();
}

// CheckView compares the latest checkpoint of `subject` that `holder` cosigned (a note signed by
// the subject, kept in the holder's log) with what `subject` shows the auditor: they must lie on
// one append-only history, else SPLIT_VIEW. A record whose note the subject did not sign is the
// holder's own claim: UNSUPPORTED.
absl::Status Auditor::CheckView(NodeLog& holder, NodeLog& subject, ReconcileReport& report) {
  uint64_t index = 0;
  const v1::LogEntry* latest = nullptr;
  for (uint64_t i = 0; i < holder.parsed.size(); ++i) {
    const auto& e = holder.parsed[i];
    if (e.kind() == v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED && e.peer() == subject.jurisdiction) {
      latest = &e;
      index = i;
    }
  }
  if (latest == nullptr) return absl::OkStatus();
  auto seen_note = common::ParseNote(latest->peer_checkpoint());
  auto seen = seen_note.ok() ? common::ParseCheckpointBody(seen_note->body)
                             : absl::StatusOr<common::Checkpoint>(seen_note.status());
  if (!seen.ok() || seen->origin != subject.checkpoint.origin ||
      !directory_.VerifyCheckpoint(*seen_note, subject.jurisdiction).ok()) {
    std::string detail = absl::StrCat(holder.jurisdiction, " records a checkpoint of ",
                                      subject.jurisdiction, " (entry ", index,
                                      ") that ", subject.jurisdiction, " did not sign");
    Finding f{"UNSUPPORTED", detail, NewBundle("UNSUPPORTED", detail, {&holder})};
    f.bundle.set_origin(subject.jurisdiction);
    f.bundle.set_destination(holder.jurisdiction);
    RETURN_IF_ERROR(AddEntry(holder, index, f.bundle));
    report.findings.push_back(std::move(f));
    return absl::OkStatus();
  }
  const uint64_t s = seen->size, n = subject.checkpoint.size;
  std::string reason, prefix_root;
  std::vector<std::string> proof;
  if (s > n) {
    // The holder saw a newer checkpoint than the auditor fetched: it must extend ours.
    ASSIGN_OR_RETURN(proof, FetchConsistencyProof(*subject.stub, n, s));
    if (!common::VerifyConsistency(n, s, proof, subject.checkpoint.root, seen->root).ok()) {
      reason = "the later checkpoint it showed the peer does not extend the one it shows the auditor";
    }
  } else if (!subject.corrupt) {
    prefix_root = subject.tree.Root(s);
    if (prefix_root != seen->root) {
      ASSIGN_OR_RETURN(proof, common::ConsistencyProof(s, n, subject.tree.Subtree()));
      reason = absl::StrCat("its first ", s, " entries have another root than the checkpoint it "
                            "showed the peer");
    }
  }
  if (!reason.empty()) {
    std::string detail = absl::StrCat(subject.jurisdiction, " showed ", holder.jurisdiction,
                                      " a checkpoint of size ", s, " (cosigned, entry ", index,
                                      ") inconsistent with its checkpoint of size ", n, ": ", reason);
    Finding f{"SPLIT_VIEW", detail, NewBundle("SPLIT_VIEW", detail, {&subject, &holder})};
    f.bundle.set_origin(subject.jurisdiction);
    f.bundle.set_destination(holder.jurisdiction);
    f.bundle.set_prefix_root(prefix_root);
    RETURN_IF_ERROR(AddEntry(holder, index, f.bundle));
    for (auto& h : proof) f.bundle.add_consistency_proof(h);
    report.findings.push_back(std::move(f));
  }
  return absl::OkStatus();
}

absl::StatusOr<ReconcileReport> Auditor::Reconcile(NodeLog& a, NodeLog& b) {
  if (a.jurisdiction == b.jurisdiction) {
    return absl::InvalidArgumentError(
        absl::StrCat("both addresses serve the log of ", a.jurisdiction, ": name two nodes"));
  }
  ReconcileReport report;
  RETURN_IF_ERROR(CheckView(a, b, report));
  RETURN_IF_ERROR(CheckView(b, a, report));
  RETURN_IF_ERROR(ReconcileChannel(a, b, report));
  RETURN_IF_ERROR(ReconcileChannel(b, a, report));
  RETURN_IF_ERROR(ReconcileQueries(a, b, report));
  RETURN_IF_ERROR(ReconcileQueries(b, a, report));
  return report;
}

}  // namespace caseway::client::audit
