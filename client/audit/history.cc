// Auditor::CollectHistory: the assessment's facts from verified logs (assessment.h).
#include <algorithm>
#include <map>

#include "client/audit/auditor.h"
#include "client/audit/evidence.h"
#include "client/audit/witnesses.h"
#include "common/digest.h"
#include "common/log_entry.h"
#include "common/status_macros.h"

namespace caseway::client::audit {

using common::TimeOf;

absl::Status Auditor::CollectInto(NodeLog& log, History& h) {
  const std::string& x = log.jurisdiction;
  h.nodes.insert(x);
  for (const v1::LogEntry& e : log.parsed) {
    if (e.kind() == v1::LogEntry::KIND_PEER_CHECKPOINT_COSIGNED && e.peer() != x) {
      h.witnesses[e.peer()][x].Add(e.last_seq(), TimeOf(e.time()));
    }
  }
  // Per destination and sequence: when x first sent it, and the first receipt x logged.
  struct SeqFacts {
    absl::Time sent = absl::InfiniteFuture();
    std::optional<TimeBounds> receipt;
    uint64_t receipt_index = 0;
  };
  std::map<std::string, std::map<uint64_t, SeqFacts>> seqs;
  std::set<std::string> peers;
  for (const v1::LogEntry& e : log.parsed) {
    if (e.kind() == v1::LogEntry::KIND_RECEIPT_RECEIVED) peers.insert(e.peer());
  }
  std::map<std::string, v1::Receipt> receipts;  // by receipt digest, signature verified
  for (const std::string& y : peers) {
    ASSIGN_OR_RETURN(auto evidence, FetchEvidence(log, y, v1::GetEvidenceRequest::DIRECTION_OUTBOUND));
    for (const auto& ev : evidence) {
      if (ev.kind() != v1::Evidence::KIND_RECEIPT_RECEIVED) continue;
      if (auto r = OpenReceipt(ev.signed_(), directory_, x, y)) {
        receipts[common::Sha256(ev.signed_().message())] = std::move(*r);
      }
    }
  }
  for (uint64_t i = 0; i < log.parsed.size(); ++i) {
    const v1::LogEntry& e = log.parsed[i];
    if (!SaneRange(e.first_seq(), e.last_seq())) continue;
    if (e.kind() == v1::LogEntry::KIND_SENT) {
      for (uint64_t s = e.first_seq(); s <= e.last_seq(); ++s) {
        SeqFacts& f = seqs[e.peer()][s];
        f.sent = std::min(f.sent, TimeOf(e.time()));
      }
    } else if (e.kind() == v1::LogEntry::KIND_RECEIPT_RECEIVED) {
      auto r = receipts.find(e.receipt_digest());
      if (r == receipts.end()) continue;  // no valid signed receipt: not a receipt
      for (uint64_t s = std::max(e.first_seq(), r->second.first_seq());
           s <= std::min(e.last_seq(), r->second.last_seq()); ++s) {
        SeqFacts& f = seqs[e.peer()][s];
        if (f.receipt) continue;
        TimeBounds t;
        t.claim = TimeOf(r->second.received_at());
        t.hi = TimeOf(e.time());  // x logged the receipt then
        f.receipt = t;
        f.receipt_index = i;
      }
    }
  }
  for (uint64_t i = 0; i < log.parsed.size(); ++i) {
    const v1::LogEntry& e = log.parsed[i];
    if (e.kind() != v1::LogEntry::KIND_PUBLISHED) continue;
    if (e.notice_kind().empty()) {
      ++h.without_facts;
      continue;
    }
    PublishedNotice& n = h.notices.emplace_back();
    n.origin = x;
    n.notice_id = e.notice_id();
    n.kind = e.notice_kind();
    n.subkind = e.notice_subkind();
    n.priority = e.priority();
    n.occurred_at = TimeOf(e.occurred_at());
    if (e.has_reply_due()) n.reply_due = TimeOf(e.reply_due());
    n.in_reply_to_origin = e.in_reply_to_origin();
    n.in_reply_to = e.in_reply_to();
    n.revision = e.revision();
    n.published = TimeOf(e.time());
    n.log_index = i;
    for (int k = 0; k < e.destinations_size() && k < e.sequences_size(); ++k) {
      Delivery& d = n.deliveries.emplace_back();
      d.destination = e.destinations(k);
      d.seq = e.sequences(k);
      auto ch = seqs.find(d.destination);
      if (ch == seqs.end()) continue;
      auto f = ch->second.find(d.seq);
      if (f == ch->second.end() || !f->second.receipt) continue;
      d.receipt = f->second.receipt;
      if (f->second.sent != absl::InfiniteFuture()) d.receipt->lo = f->second.sent;
      d.receipt_log_index = f->second.receipt_index;
    }
  }
  return absl::OkStatus();
}

void Auditor::FinishHistory(History& h) {
  for (auto& [node, by] : h.witnesses) {
    for (auto& [witness, w] : by) w.Seal();
  }
}

absl::StatusOr<History> Auditor::CollectHistory(const std::vector<NodeLog*>& logs) {
  History h;
  for (NodeLog* log : logs) RETURN_IF_ERROR(CollectInto(*log, h));
  FinishHistory(h);
  return h;
}

}  // namespace caseway::client::audit
