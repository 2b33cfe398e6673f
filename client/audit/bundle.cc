// Offline verification of evidence bundles (`caseway audit verify-bundle`).
//
// Nothing in a bundle is trusted for being there: a fact counts only when it is signed by the right
// key (directory), bound to the claimed channel (origin x -> destination y), and named by a log
// entry that proves into its node's signed checkpoint. Absences (X's log lacks Y) cannot be shown
// by a bundle; a bundle shows the signed evidence that makes the absence a finding.
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/audit/auditor.h"
#include "client/audit/evidence.h"
#include "common/digest.h"
#include "common/log_entry.h"
#include "common/merkle.h"
#include "common/status_macros.h"

namespace caseway::client::audit {

namespace {

// ProvenEntry is a log entry whose inclusion in its node's signed checkpoint was verified.
struct ProvenEntry {
  std::string jurisdiction;
  uint64_t index;
  v1::LogEntry entry;
};

absl::Status Fail(const std::string& what) { return absl::FailedPreconditionError(what); }

}  // namespace

absl::StatusOr<std::vector<std::string>> VerifyBundle(const v1::EvidenceBundle& b,
                                                      const common::Directory& dir) {
  std::vector<std::string> report;
  if (b.federation() != dir.federation()) {
    return Fail(absl::StrCat("bundle federation ", b.federation(), " is not the directory's ",
                             dir.federation()));
  }
  const std::string& x = b.origin();
  const std::string& y = b.destination();
  const uint64_t seq = b.seq();
  const std::string& st = b.status();

  // 1. Checkpoints: signed by their node, origin line naming it.
  std::map<std::string, common::Checkpoint> checkpoints;
  for (const auto& c : b.checkpoints()) {
    RETURN_IF_ERROR(dir.Listed(c.jurisdiction()));
    ASSIGN_OR_RETURN(common::Note note, common::ParseNote(c.note()));
    ASSIGN_OR_RETURN(common::Checkpoint cp, common::ParseCheckpointBody(note.body));
    if (cp.origin != dir.NoteName(c.jurisdiction()) ||
        !dir.VerifyCheckpoint(note, c.jurisdiction()).ok()) {
      return Fail(absl::StrCat("checkpoint of ", c.jurisdiction(), ": signature does not verify"));
    }
    checkpoints[c.jurisdiction()] = cp;
    report.push_back(absl::StrCat("ok   checkpoint of ", c.jurisdiction(), " (", cp.size,
                                  " entries) signed by its key"));
  }
  auto checkpoint_of = [&](const std::string& j) -> const common::Checkpoint* {
    auto it = checkpoints.find(j);
    return it == checkpoints.end() ? nullptr : &it->second;
  };

  // Observations: the node's signed checkpoint verifies, but what the auditor saw it serve
  // (entries, a log size, notice bytes, a halt report) is not signed, so a bundle can show it to a
  // third party only as the auditor's statement.
  auto observed = [&](const std::string& what) {
    report.push_back(absl::StrCat(
        "=> ", st, " (observed by the auditor at ",
        absl::FormatTime(absl::RFC3339_sec, absl::FromUnixSeconds(b.created_at().seconds()),
                         absl::UTCTimeZone()),
        "; not provable offline): ", what));
    return report;
  };
  if (st == "LOG_CORRUPT" || st == "TRUNCATED" || st == "HALTED" || st == "STALE_CHECKPOINT") {
    if (checkpoint_of(x) == nullptr) return Fail(absl::StrCat("claim ", st, ": no checkpoint of ", x));
    for (const auto& e : b.entries()) {
      const common::Checkpoint* cp = checkpoint_of(e.jurisdiction());
      std::vector<std::string> proof(e.proof().begin(), e.proof().end());
      if (cp != nullptr && common::VerifyInclusion(e.index(), cp->size, common::LeafHash(e.entry()),
                                                   proof, cp->root)
                               .ok()) {
        return Fail(absl::StrCat("claim ", st, ": entry ", e.index(),
                                 " does prove into the signed checkpoint"));
      }
      report.push_back(absl::StrCat("ok   entry ", e.index(), " of ", e.jurisdiction(),
                                    " does not prove into its signed checkpoint with the proof "
                                    "the node gave"));
    }
    return observed(b.detail());
  }

  // 2. Entries: each must prove into its node's checkpoint, at that checkpoint's size.
  std::vector<ProvenEntry> proven;
  std::set<std::pair<std::string, uint64_t>> seen;
  for (const auto& e : b.entries()) {
    const common::Checkpoint* cp = checkpoint_of(e.jurisdiction());
    if (cp == nullptr) {
      return Fail(absl::StrCat("entry ", e.index(), " of ", e.jurisdiction(), ": no checkpoint"));
    }
    std::vector<std::string> proof(e.proof().begin(), e.proof().end());
    if (e.tree_size() != cp->size ||
        !common::VerifyInclusion(e.index(), cp->size, common::LeafHash(e.entry()), proof, cp->root)
             .ok()) {
      return Fail(absl::StrCat("entry ", e.index(), " of ", e.jurisdiction(),
                               ": not included in its signed checkpoint"));
    }
    if (!seen.insert({e.jurisdiction(), e.index()}).second) continue;  // listed twice: once counts
    v1::LogEntry parsed;
    if (!parsed.ParseFromString(e.entry())) return Fail("entry: not a caseway.v1.LogEntry");
    proven.push_back({e.jurisdiction(), e.index(), parsed});
    report.push_back(absl::StrCat("ok   entry ", e.index(), " of ", e.jurisdiction(), " (",
                                  v1::LogEntry::Kind_Name(parsed.kind()),
                                  ") proven into its checkpoint"));
  }
  auto entries_of = [&](const std::string& j, v1::LogEntry::Kind kind, const std::string& peer) {
    std::vector<const ProvenEntry*> out;
    for (const auto& p : proven) {
      if (p.jurisdiction == j && p.entry.kind() == kind && p.entry.peer() == peer &&
          (seq == 0 || (seq >= p.entry.first_seq() && seq <= p.entry.last_seq()))) {
        out.push_back(&p);
      }
    }
    return out;
  };

  // 3. Manifests by digest: valid only if signed by x, for channel x -> y, well formed.
  std::map<std::string, v1::BatchManifest> valid_manifest;
  std::set<std::string> present_manifest;
  if (!x.empty()) RETURN_IF_ERROR(dir.Listed(x));
  for (const auto& s : b.manifests()) {
    const std::string digest = common::Sha256(s.message());
    present_manifest.insert(digest);
    auto opened = OpenManifest(s, dir, x, y);
    const bool valid = opened.has_value();
    v1::BatchManifest m = valid ? *opened : v1::BatchManifest();
    if (!valid) m.ParseFromString(s.message());  // for the report only
    if (valid) valid_manifest[digest] = m;
    report.push_back(absl::StrCat(valid ? "ok   " : "BAD  ", "manifest ", m.first_seq(), "..",
                                  m.last_seq(), valid ? " signed by " : " not a valid manifest of ",
                                  x, " for ", y));
  }
  auto manifest_of = [&](const ProvenEntry* e) -> const v1::BatchManifest* {
    auto it = valid_manifest.find(e->entry.digest());
    if (it == valid_manifest.end() || !Covers(it->second, seq) ||
        it->second.first_seq() != e->entry.first_seq() ||
        it->second.last_seq() != e->entry.last_seq()) {
      return nullptr;
    }
    return &it->second;
  };
  // Receipts by digest: valid only if signed by y, for channel x -> y.
  std::map<std::string, v1::Receipt> valid_receipt;
  std::set<std::string> present_receipt;
  for (const auto& s : b.receipts()) {
    const std::string digest = common::Sha256(s.message());
    present_receipt.insert(digest);
    auto opened = OpenReceipt(s, dir, x, y);
    const bool valid = opened.has_value();
    v1::Receipt r = valid ? *opened : v1::Receipt();
    if (!valid) r.ParseFromString(s.message());  // for the report only
    if (valid) valid_receipt[digest] = r;
    report.push_back(absl::StrCat(valid ? "ok   " : "BAD  ", "receipt ", r.first_seq(), "..",
                                  r.last_seq(), valid ? " signed by " : " not a valid receipt of ",
                                  y, " for ", x));
  }
  // A receipt counts only when x's log records it (RECEIPT_RECEIVED naming its digest).
  auto recorded_receipts = [&]() {
    std::vector<v1::Receipt> out;
    for (const ProvenEntry* e : entries_of(x, v1::LogEntry::KIND_RECEIPT_RECEIVED, y)) {
      auto it = valid_receipt.find(e->entry.receipt_digest());
      if (it != valid_receipt.end() && seq >= it->second.first_seq() && seq <= it->second.last_seq()) {
        out.push_back(it->second);
      }
    }
    return out;
  };

  // Signed query answers by digest: valid only if signed by y for x.
  std::map<std::string, v1::QueryAnswer> valid_answer;
  std::set<std::string> present_answer;
  for (const auto& s : b.answers()) {
    auto a = OpenAnswer(s, dir, x, y);
    present_answer.insert(common::Sha256(s.message()));
    report.push_back(absl::StrCat(a ? "ok   " : "BAD  ", "answer ",
                                  a ? "signed by " : "not a valid answer of ", y, " to ", x));
    if (a) valid_answer[common::Sha256(s.message())] = *a;
  }

  // 4. The claim.
  std::string claim;
  if (st == "PROVEN" || st == "MATCHED" || st == "CONFLICT") {
    auto sent = entries_of(x, v1::LogEntry::KIND_SENT, y);
    auto recv = entries_of(y, v1::LogEntry::KIND_RECEIVED, x);
    if (sent.empty() || recv.empty()) return Fail("claim: needs x's SENT and y's RECEIVED entries");
    const v1::BatchManifest* ms = manifest_of(sent[0]);
    const v1::BatchManifest* mr = manifest_of(recv[0]);
    if (ms == nullptr || mr == nullptr) {
      return Fail("claim: needs the manifests both entries name, validly signed by x for x -> y");
    }
    const bool equal = SeqDigest(*ms, seq) == SeqDigest(*mr, seq);
    if (st == "CONFLICT") {
      if (equal) return Fail("claim CONFLICT: the two manifests agree on the digest");
      claim = absl::StrCat(x, " signed two different contents for seq ", seq, " of ", x, " -> ", y);
    } else {
      if (!equal) return Fail("claim: the manifests disagree on the digest");
      claim = absl::StrCat("seq ", seq, " was sent by ", x, " and received by ", y,
                           " with equal digests");
      if (st == "PROVEN") {
        bool receipted = false;
        for (const auto& r : recorded_receipts()) {
          receipted |= r.manifest_digest() == recv[0]->entry.digest() && r.log_index() == recv[0]->index;
        }
        if (!receipted) {
          return Fail("claim PROVEN: no receipt recorded by x that names the received manifest and "
                      "y's RECEIVED entry");
        }
        claim += absl::StrCat(", and ", y, " signed a receipt naming its entry ", recv[0]->index);
      }
    }
  } else if (st == "RECEIVER_OMITTED") {
    if (recorded_receipts().empty()) {
      return Fail("claim RECEIVER_OMITTED: no valid receipt by y recorded in x's log");
    }
    claim = absl::StrCat(y, " signed a receipt for seq ", seq,
                         " (that its log lacks the entry is shown by auditing its whole log)");
  } else if (st == "SENDER_OMITTED") {
    auto recv = entries_of(y, v1::LogEntry::KIND_RECEIVED, x);
    if (recv.empty() || manifest_of(recv[0]) == nullptr) {
      return Fail("claim SENDER_OMITTED: needs y's RECEIVED entry and x's signed manifest it names");
    }
    claim = absl::StrCat(x, " signed a manifest for seq ", seq, " that ", y, " received (that ", x,
                         "'s log lacks it is shown by auditing its whole log)");
  } else if (st == "UNSUPPORTED") {
    // The claimant's entry names signed evidence that is present in the bundle and fails.
    bool unsupported = false;
    for (const ProvenEntry* e : entries_of(y, v1::LogEntry::KIND_RECEIVED, x)) {
      unsupported |= present_manifest.count(e->entry.digest()) && !valid_manifest.count(e->entry.digest());
    }
    for (const ProvenEntry* e : entries_of(x, v1::LogEntry::KIND_RECEIPT_RECEIVED, y)) {
      unsupported |= present_receipt.count(e->entry.receipt_digest()) &&
                     !valid_receipt.count(e->entry.receipt_digest());
    }
    // x records an answer of y that the bundle shows and that does not verify, or answers
    // another question or names another entry.
    for (const ProvenEntry* e : entries_of(x, v1::LogEntry::KIND_QUERY_ASKED, y)) {
      auto valid = valid_answer.find(e->entry.digest());
      unsupported |= present_answer.count(e->entry.digest()) &&
                     (valid == valid_answer.end() ||
                      valid->second.request_digest() != e->entry.request_digest() ||
                      valid->second.log_index() != e->entry.peer_log_index());
    }
    // A holder's record of x's checkpoint that x did not sign.
    for (const auto& p : proven) {
      if (p.entry.kind() != v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED || p.entry.peer() != x) continue;
      auto note = common::ParseNote(p.entry.peer_checkpoint());
      unsupported |= !note.ok() || !dir.VerifyCheckpoint(*note, x).ok();
    }
    if (!unsupported) {
      return Fail("claim UNSUPPORTED: no proven entry names signed evidence that fails");
    }
    claim = "a node's log claims an exchange whose signed evidence does not verify";
  } else if (st == "DUPLICATE") {
    int valid = 0;
    for (const ProvenEntry* e : entries_of(y, v1::LogEntry::KIND_RECEIVED, x)) {
      valid += manifest_of(e) != nullptr;
    }
    if (valid < 2) return Fail("claim DUPLICATE: needs two RECEIVED entries with valid manifests");
    claim = absl::StrCat(y, "'s log records seq ", seq, " as received ", valid, " times");
  } else if (st == "ANSWERED" || st == "ANSWER_NOT_LOGGED" || st == "QUESTION_NOT_LOGGED" ||
             (st == "PENDING" && b.seq() == 0 && absl::StartsWith(b.notice_id(), "query-") &&
              (!entries_of(x, v1::LogEntry::KIND_QUERY_ASKED, y).empty() ||
               !entries_of(y, v1::LogEntry::KIND_QUERY_ANSWERED, x).empty()))) {
    // Remote queries: x asked, y answered.
    auto asked = entries_of(x, v1::LogEntry::KIND_QUERY_ASKED, y);
    auto answered = entries_of(y, v1::LogEntry::KIND_QUERY_ANSWERED, x);
    auto answer_for = [&](const ProvenEntry* e) -> const v1::QueryAnswer* {
      auto it = valid_answer.find(e->entry.digest());
      if (it == valid_answer.end() || it->second.request_digest() != e->entry.request_digest() ||
          it->second.log_index() != e->entry.peer_log_index()) {
        return nullptr;
      }
      return &it->second;
    };
    if (st == "ANSWERED") {
      if (asked.empty() || answered.empty() || answer_for(asked[0]) == nullptr ||
          answered[0]->index != asked[0]->entry.peer_log_index() ||
          answered[0]->entry.digest() != asked[0]->entry.digest()) {
        return Fail("claim ANSWERED: needs x's QUERY_ASKED entry, y's signed answer it names and "
                    "y's QUERY_ANSWERED entry at the index the answer gives");
      }
      claim = absl::StrCat(x, " asked ", y, " and both logs record the same signed answer");
    } else if (st == "ANSWER_NOT_LOGGED") {
      if (asked.empty() || answer_for(asked[0]) == nullptr) {
        return Fail("claim ANSWER_NOT_LOGGED: needs x's QUERY_ASKED entry and y's signed answer it "
                    "names");
      }
      // y's own entry at the index its signed answer names, proven into y's checkpoint, is
      // something else.
      const uint64_t named = asked[0]->entry.peer_log_index();
      const ProvenEntry* at = nullptr;
      for (const auto& p : proven) {
        if (p.jurisdiction == y && p.index == named) at = &p;
      }
      if (at == nullptr) {
        return Fail(absl::StrCat("claim ANSWER_NOT_LOGGED: needs y's entry ", named,
                                 " proven into y's checkpoint"));
      }
      if (at->entry.kind() == v1::LogEntry::KIND_QUERY_ANSWERED && at->entry.peer() == x &&
          at->entry.digest() == asked[0]->entry.digest()) {
        return Fail("claim ANSWER_NOT_LOGGED: y's entry records that answer");
      }
      claim = absl::StrCat(y, " signed an answer to ", x, " naming its log entry ", named,
                           ", and that entry of its signed log is a ",
                           v1::LogEntry::Kind_Name(at->entry.kind()), " entry, not the answer");
    } else if (st == "QUESTION_NOT_LOGGED") {
      if (answered.empty()) return Fail("claim QUESTION_NOT_LOGGED: needs y's QUERY_ANSWERED entry");
      claim = absl::StrCat(y, "'s log records an answer to ", x, " (that ", x,
                           "'s log lacks the question is shown by auditing its whole log)");
    } else {
      if (asked.empty() && answered.empty()) {
        return Fail("claim PENDING: needs x's QUERY_ASKED or y's QUERY_ANSWERED entry");
      }
      claim = absl::StrCat("a query of ", x, " to ", y, " is recorded by one side so far");
    }
  } else if (st == "PENDING" || st == "UNDELIVERED") {
    bool published = false;
    for (const auto& p : proven) {
      published |= p.jurisdiction == x && p.entry.kind() == v1::LogEntry::KIND_PUBLISHED &&
                   std::find(p.entry.destinations().begin(), p.entry.destinations().end(), y) !=
                       p.entry.destinations().end();
    }
    if (entries_of(x, v1::LogEntry::KIND_SENT, y).empty() && !published) {
      return Fail("claim: needs x's SENT or PUBLISHED entry for y");
    }
    claim = absl::StrCat(x, " published or sent it to ", y, "; no receiving is recorded");
  } else if (st == "NOTICE_BYTES") {
    // Provable: the bytes in the bundle are not the notice the proven entry (or the signed
    // manifest it names) gives for that sequence. That the node served them is observed.
    const std::string served = common::Sha256(b.notice());
    bool contradicted = false;
    for (const auto& p : proven) {
      if (p.entry.kind() == v1::LogEntry::KIND_PUBLISHED && p.jurisdiction == x) {
        for (int d = 0; d < p.entry.destinations_size() && d < p.entry.sequences_size(); ++d) {
          contradicted |= p.entry.destinations(d) == y && p.entry.sequences(d) == seq &&
                          common::DestinationDigest(p.entry, d) != served;
        }
      } else if (p.entry.kind() == v1::LogEntry::KIND_RECEIVED && p.jurisdiction == y &&
                 p.entry.peer() == x) {
        const v1::BatchManifest* m = manifest_of(&p);
        contradicted |= m != nullptr && SeqDigest(*m, seq) != served;
      }
    }
    if (!contradicted) {
      return Fail("claim NOTICE_BYTES: no proven entry or signed manifest gives seq another digest "
                  "than these bytes have");
    }
    claim = absl::StrCat("the logged digest of seq ", seq, " of ", x, " -> ", y,
                         " is not the digest of the bytes in this bundle (that the node served "
                         "these bytes is the auditor's observation)");
  } else if (st == "LOG_FORMAT") {
    const ProvenEntry* at = nullptr;
    const ProvenEntry* before = nullptr;
    for (const auto& p : proven) {
      if (p.jurisdiction != x) continue;
      if (p.index == seq) at = &p;
      if (seq > 0 && p.index == seq - 1) before = &p;
    }
    std::string bytes;
    for (const auto& e : b.entries()) {
      if (e.jurisdiction() == x && e.index() == seq) bytes = e.entry();
    }
    if (at == nullptr && bytes.empty()) return Fail("claim LOG_FORMAT: the entry is not in the bundle");
    auto parsed = common::ParseLogEntry(bytes, seq);
    if (!parsed.ok()) {
      claim = absl::StrCat(x, "'s signed log holds a malformed entry: ", parsed.status().message());
    } else if (before != nullptr &&
               common::EntryMicros(*parsed) < common::EntryMicros(before->entry)) {
      claim = absl::StrCat(x, "'s signed log dates entry ", seq, " before entry ", seq - 1);
    } else {
      return Fail("claim LOG_FORMAT: the entry is canonical and in time order");
    }
  } else if (st == "ROLLBACK") {
    RETURN_IF_ERROR(dir.Listed(x));
    ASSIGN_OR_RETURN(common::Note earlier_note, common::ParseNote(b.earlier_checkpoint()));
    ASSIGN_OR_RETURN(common::Checkpoint earlier, common::ParseCheckpointBody(earlier_note.body));
    if (earlier.origin != dir.NoteName(x) || !dir.VerifyCheckpoint(earlier_note, x).ok()) {
      return Fail(absl::StrCat("claim ROLLBACK: the earlier checkpoint is not signed by ", x));
    }
    const common::Checkpoint* now = checkpoint_of(x);
    if (now == nullptr || now->size >= earlier.size) {
      return Fail("claim ROLLBACK: needs a current checkpoint smaller than the earlier one");
    }
    if (earlier.time > 0 && now->time >= earlier.time) {
      claim = absl::StrCat(x, " signed a log of ", now->size, " entries at ", now->time,
                           ", after signing one of ", earlier.size, " at ", earlier.time);
    } else {
      return observed(absl::StrCat(x, " signed logs of ", earlier.size, " and ", now->size,
                                   " entries; the checkpoints carry no times that order them, "
                                   "so which came later is the auditor's observation"));
    }
  } else if (st == "BEYOND_POLICY" || st == "POLICY_UNPROVEN") {
    // What the node served (and whether it showed its signed policy) is not signed.
    return observed(b.detail());
  } else if (st == "FORK" || st == "SPLIT_VIEW") {
    // The contradicted checkpoint (m, Rm), signed by x: kept by the auditor (FORK) or recorded
    // in a peer's proven log entry (SPLIT_VIEW).
    RETURN_IF_ERROR(dir.Listed(x));
    std::string earlier_text = b.earlier_checkpoint();
    if (st == "SPLIT_VIEW") {
      for (const auto& p : proven) {
        if (p.entry.kind() == v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED && p.entry.peer() == x) {
          earlier_text = p.entry.peer_checkpoint();
        }
      }
    }
    ASSIGN_OR_RETURN(common::Note earlier_note, common::ParseNote(earlier_text));
    ASSIGN_OR_RETURN(common::Checkpoint earlier, common::ParseCheckpointBody(earlier_note.body));
    if (earlier.origin != dir.NoteName(x) || !dir.VerifyCheckpoint(earlier_note, x).ok()) {
      return Fail(absl::StrCat("claim ", st, ": the contradicted checkpoint is not signed by ", x));
    }
    const common::Checkpoint* now = checkpoint_of(x);
    if (now == nullptr) return Fail(absl::StrCat("claim ", st, ": no current checkpoint of ", x));
    const uint64_t m = earlier.size, n = now->size;
    std::vector<std::string> proof(b.consistency_proof().begin(), b.consistency_proof().end());
    if (m == n && earlier.root != now->root) {
      claim = absl::StrCat(x, " signed two roots for size ", n);
    } else if (m < n && b.prefix_root().size() == common::kHashSize &&
               b.prefix_root() != earlier.root &&
               common::VerifyConsistency(m, n, proof, b.prefix_root(), now->root).ok()) {
      claim = absl::StrCat("the first ", m, " entries of ", x, "'s signed log of ", n,
                           " have another root than ", x, " signed for size ", m);
    } else {
      return Fail(absl::StrCat(
          "claim ", st, " is not shown by this bundle (it needs equal sizes with different roots, "
          "or a consistency proof that verifies from another root of the smaller size)"));
    }
  } else {
    return Fail(absl::StrCat("status ", st, " is not known to this verifier"));
  }
  report.push_back(absl::StrCat("=> ", st, ": ", claim));
  return report;
}

}  // namespace caseway::client::audit
