// Offline verification of evidence bundles (`caseway audit verify-bundle`).
#include <map>

#include "absl/strings/str_cat.h"
#include "client/audit/auditor.h"
#include "common/digest.h"
#include "common/merkle.h"
#include "common/status_macros.h"

namespace caseway::client::audit {

namespace {

// Facts established from a bundle, each only after its signature or proof checked out.
struct Facts {
  std::map<std::string, common::Checkpoint> checkpoints;      // by jurisdiction
  std::vector<std::pair<std::string, v1::LogEntry>> entries;  // proven entries (jurisdiction)
  std::map<std::string, v1::BatchManifest> valid_manifests;   // by manifest digest
  std::map<std::string, bool> manifest_valid;                 // by manifest digest
  std::vector<v1::Receipt> valid_receipts;
  int invalid_receipts = 0;
};

bool Covers(const v1::BatchManifest& m, uint64_t seq) {
  return seq >= m.first_seq() && seq <= m.last_seq() &&
         m.digests_size() == static_cast<int>(m.last_seq() - m.first_seq() + 1);
}

std::string SeqDigest(const v1::BatchManifest& m, uint64_t seq) {
  return m.digests(static_cast<int>(seq - m.first_seq()));
}

}  // namespace

absl::StatusOr<std::vector<std::string>> VerifyBundle(const v1::EvidenceBundle& b,
                                                      const common::Directory& dir) {
  std::vector<std::string> report;
  Facts f;
  auto fail = [&](const std::string& what) {
    return absl::FailedPreconditionError(what);
  };
  if (b.federation() != dir.federation()) {
    return fail(absl::StrCat("bundle federation ", b.federation(), " is not the directory's ",
                             dir.federation()));
  }
  // 1. Checkpoints: signed by their node.
  for (const auto& c : b.checkpoints()) {
    ASSIGN_OR_RETURN(std::string key, dir.Key(c.jurisdiction()));
    ASSIGN_OR_RETURN(common::Note note, common::ParseNote(c.note()));
    ASSIGN_OR_RETURN(common::Checkpoint cp, common::ParseCheckpointBody(note.body));
    if (cp.origin != dir.NoteName(c.jurisdiction()) ||
        !common::VerifyNote(note, cp.origin, key).ok()) {
      return fail(absl::StrCat("checkpoint of ", c.jurisdiction(), ": signature does not verify"));
    }
    f.checkpoints[c.jurisdiction()] = cp;
    report.push_back(absl::StrCat("ok   checkpoint of ", c.jurisdiction(), " (", cp.size,
                                  " entries) signed by its key"));
  }
  // 2. Entries: prove into their node's checkpoint.
  for (const auto& e : b.entries()) {
    auto cp = f.checkpoints.find(e.jurisdiction());
    if (cp == f.checkpoints.end()) {
      return fail(absl::StrCat("entry ", e.index(), " of ", e.jurisdiction(), ": no checkpoint"));
    }
    if (b.status() == "LOG_CORRUPT") continue;  // these entries are the ones that do not prove
    std::vector<std::string> proof(e.proof().begin(), e.proof().end());
    if (e.tree_size() != cp->second.size ||
        !common::VerifyInclusion(e.index(), e.tree_size(), common::LeafHash(e.entry()), proof,
                                 cp->second.root)
             .ok()) {
      return fail(absl::StrCat("entry ", e.index(), " of ", e.jurisdiction(),
                               ": not included in its signed checkpoint"));
    }
    v1::LogEntry parsed;
    if (!parsed.ParseFromString(e.entry())) return fail("entry: not a caseway.v1.LogEntry");
    f.entries.emplace_back(e.jurisdiction(), parsed);
    report.push_back(absl::StrCat("ok   entry ", e.index(), " of ", e.jurisdiction(), " (",
                                  v1::LogEntry::Kind_Name(parsed.kind()),
                                  ") proven into its checkpoint"));
  }
  // 3. Manifests and receipts: signatures by the right key and context.
  for (const auto& s : b.manifests()) {
    v1::BatchManifest m;
    const std::string digest = common::Sha256(s.message());
    bool valid = m.ParseFromString(s.message()) && dir.Key(m.origin()).ok() &&
                 common::VerifySignature(*dir.Key(m.origin()), common::kManifestContext,
                                         s.message(), s.signature())
                     .ok();
    f.manifest_valid[digest] = valid;
    if (valid) f.valid_manifests[digest] = m;
    report.push_back(absl::StrCat(valid ? "ok   " : "BAD  ", "manifest ", m.first_seq(), "..",
                                  m.last_seq(), valid ? " signed by " : " not signed by ",
                                  m.origin()));
  }
  for (const auto& s : b.receipts()) {
    v1::Receipt r;
    bool valid = r.ParseFromString(s.message()) && dir.Key(r.receiver()).ok() &&
                 common::VerifySignature(*dir.Key(r.receiver()), common::kReceiptContext,
                                         s.message(), s.signature())
                     .ok();
    if (valid) f.valid_receipts.push_back(r); else ++f.invalid_receipts;
    report.push_back(absl::StrCat(valid ? "ok   " : "BAD  ", "receipt ", r.first_seq(), "..",
                                  r.last_seq(), valid ? " signed by " : " not signed by ",
                                  r.receiver()));
  }

  // 4. The claim.
  const std::string& x = b.origin();
  const std::string& y = b.destination();
  const uint64_t seq = b.seq();
  auto entries_of = [&](const std::string& j, v1::LogEntry::Kind kind) {
    std::vector<v1::LogEntry> out;
    for (const auto& [who, e] : f.entries) {
      if (who == j && e.kind() == kind && (seq == 0 || (seq >= e.first_seq() && seq <= e.last_seq()))) {
        out.push_back(e);
      }
    }
    return out;
  };
  auto valid_manifest_of = [&](const v1::LogEntry& e) -> const v1::BatchManifest* {
    auto it = f.valid_manifests.find(e.digest());
    return it != f.valid_manifests.end() && Covers(it->second, seq) ? &it->second : nullptr;
  };
  const std::string& st = b.status();
  std::string claim;
  if (st == "PROVEN" || st == "MATCHED" || st == "CONFLICT") {
    auto sent = entries_of(x, v1::LogEntry::KIND_SENT);
    auto recv = entries_of(y, v1::LogEntry::KIND_RECEIVED);
    if (sent.empty() || recv.empty()) return fail("claim: needs the SENT and RECEIVED entries");
    const v1::BatchManifest* ms = valid_manifest_of(sent[0]);
    const v1::BatchManifest* mr = valid_manifest_of(recv[0]);
    if (ms == nullptr || mr == nullptr) return fail("claim: needs both manifests, validly signed");
    bool equal = SeqDigest(*ms, seq) == SeqDigest(*mr, seq);
    if (st == "CONFLICT") {
      if (equal) return fail("claim CONFLICT: the two manifests agree on the digest");
      claim = absl::StrCat(x, " signed two different contents for seq ", seq);
    } else {
      if (!equal) return fail("claim: the manifests disagree on the digest");
      claim = absl::StrCat("seq ", seq, " was sent by ", x, " and received by ", y, " with equal digests");
      if (st == "PROVEN") {
        bool receipted = false;
        for (const auto& r : f.valid_receipts) {
          receipted |= r.origin() == x && r.receiver() == y && r.manifest_digest() == recv[0].digest() &&
                       seq >= r.first_seq() && seq <= r.last_seq();
        }
        if (!receipted) return fail("claim PROVEN: no valid receipt of the received manifest");
        claim += absl::StrCat(", and ", y, " signed a receipt for it");
      }
    }
  } else if (st == "RECEIVER_OMITTED") {
    bool receipted = false;
    for (const auto& r : f.valid_receipts) {
      receipted |= r.receiver() == y && seq >= r.first_seq() && seq <= r.last_seq();
    }
    if (!receipted) return fail("claim RECEIVER_OMITTED: no valid receipt by the destination");
    claim = absl::StrCat(y, " signed a receipt for seq ", seq,
                         " (that its log lacks the entry is shown by auditing its whole log)");
  } else if (st == "SENDER_OMITTED") {
    auto recv = entries_of(y, v1::LogEntry::KIND_RECEIVED);
    if (recv.empty() || valid_manifest_of(recv[0]) == nullptr) {
      return fail("claim SENDER_OMITTED: needs the RECEIVED entry and the origin's signed manifest");
    }
    claim = absl::StrCat(x, " signed a manifest for seq ", seq, " that ", y,
                         " received (that ", x, "'s log lacks it is shown by auditing its whole log)");
  } else if (st == "UNSUPPORTED") {
    auto recv = entries_of(y, v1::LogEntry::KIND_RECEIVED);
    bool unsupported = f.invalid_receipts > 0;
    for (const auto& e : recv) {
      auto it = f.manifest_valid.find(e.digest());
      unsupported |= it == f.manifest_valid.end() || !it->second;
    }
    if (!unsupported) return fail("claim UNSUPPORTED: every signature in the bundle verifies");
    claim = "a node's log claims an exchange that no valid signature of the other side supports";
  } else if (st == "DUPLICATE") {
    auto recv = entries_of(y, v1::LogEntry::KIND_RECEIVED);
    if (recv.size() < 2) return fail("claim DUPLICATE: needs two RECEIVED entries for the seq");
    claim = absl::StrCat(y, "'s log records seq ", seq, " as received ", recv.size(), " times");
  } else if (st == "PENDING" || st == "UNDELIVERED") {
    if (entries_of(x, v1::LogEntry::KIND_SENT).empty() &&
        entries_of(x, v1::LogEntry::KIND_PUBLISHED).empty()) {
      return fail("claim: needs the origin's SENT or PUBLISHED entry");
    }
    claim = absl::StrCat(x, " published or sent it; no receiving is recorded");
  } else if (st == "FORK") {
    ASSIGN_OR_RETURN(common::Note earlier_note, common::ParseNote(b.earlier_checkpoint()));
    ASSIGN_OR_RETURN(common::Checkpoint earlier, common::ParseCheckpointBody(earlier_note.body));
    ASSIGN_OR_RETURN(std::string key, dir.Key(x));
    if (!common::VerifyNote(earlier_note, dir.NoteName(x), key).ok()) {
      return fail("claim FORK: the earlier checkpoint is not signed by the node");
    }
    const common::Checkpoint& now = f.checkpoints.at(x);
    std::vector<std::string> proof(b.consistency_proof().begin(), b.consistency_proof().end());
    if (earlier.size <= now.size &&
        common::VerifyConsistency(earlier.size, now.size, proof, earlier.root, now.root).ok()) {
      return fail("claim FORK: the checkpoints are consistent");
    }
    claim = absl::StrCat(x, " signed checkpoints of sizes ", earlier.size, " and ", now.size,
                         " that are not one append-only history");
  } else if (st == "SPLIT_VIEW") {
    bool shown = false;
    for (const auto& [who, e] : f.entries) {
      if (e.kind() != v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED || e.peer() != x) continue;
      auto note = common::ParseNote(e.peer_checkpoint());
      auto key = dir.Key(x);
      if (!note.ok() || !key.ok() || !common::VerifyNote(*note, dir.NoteName(x), *key).ok()) continue;
      auto seen = common::ParseCheckpointBody(note->body);
      const common::Checkpoint& now = f.checkpoints.at(x);
      std::vector<std::string> proof(b.consistency_proof().begin(), b.consistency_proof().end());
      shown = seen.ok() && (seen->size > now.size ||
                            !common::VerifyConsistency(seen->size, now.size, proof, seen->root,
                                                       now.root).ok());
    }
    if (!shown) return fail("claim SPLIT_VIEW: no contradicting pair of signed checkpoints");
    claim = absl::StrCat(x, " signed two checkpoints, shown to different parties, that contradict");
  } else if (st == "LOG_CORRUPT") {
    const common::Checkpoint& cp = f.checkpoints.at(x);
    int shown = 0;
    for (const auto& e : b.entries()) {
      std::vector<std::string> proof(e.proof().begin(), e.proof().end());
      if (!common::VerifyInclusion(e.index(), cp.size, common::LeafHash(e.entry()), proof, cp.root)
               .ok()) {
        ++shown;
        report.push_back(absl::StrCat("ok   entry ", e.index(), " as served by ", x,
                                      " does not prove into its signed root with its own proof"));
      }
    }
    if (shown == 0) return fail("claim LOG_CORRUPT: every entry in the bundle proves into the root");
    claim = absl::StrCat(x, " serves ", shown, " entr", shown == 1 ? "y" : "ies",
                         " that its own signed checkpoint and proofs contradict");
  } else {
    return fail(absl::StrCat("status ", st, " is not known to this verifier"));
  }
  report.push_back(absl::StrCat("=> ", st, ": ", claim));
  return report;
}

}  // namespace caseway::client::audit
