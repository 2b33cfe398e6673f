#include "client/cli/case_commands.h"

#include <cstdio>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "common/case_events.h"
#include "common/digest.h"
#include "common/json.h"
#include "common/policy.h"

namespace caseway::cli {

namespace v1 = caseway::v1;
using caseway::common::ProtoJson;

namespace {

std::string Cst(const google::protobuf::Timestamp& t) {
  if (t.seconds() == 0 && t.nanos() == 0) return "-";
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(t.seconds()),
                          caseway::common::ChinaStandardTime());
}

void PrintError(const char* command, const absl::Status& s) {
  fprintf(stderr, "caseway %s: %s: %s\n", command, absl::StatusCodeToString(s.code()).c_str(),
          std::string(s.message()).c_str());
}

// CaseEvent of a notice in a peer's answer.
v1::CaseEvent EventOf(const std::string& holder, const std::string& self, const v1::QueryNotice& q,
                      const v1::Notice& notice) {
  v1::CaseEvent e;
  e.set_holder(holder);
  e.set_role(q.role());
  *e.mutable_notice() = notice;
  e.set_digest(caseway::common::Sha256(q.notice()));
  *e.mutable_stored_at() = q.stored_at();
  if (q.role() == v1::QueryNotice::ROLE_PUBLISHED) {
    v1::CaseEvent::Delivery& d = *e.add_deliveries();
    d.set_destination(self);
    d.set_seq(q.seq());
    d.set_receipted(q.acknowledged());
  } else {
    e.set_channel_seq(q.seq());
    e.set_consumed(q.acknowledged());
  }
  for (const std::string& by : q.replies_owed_by()) {
    v1::TodoItem& item = *e.add_replies();
    item.set_peer(by);
    item.set_state(v1::TodoItem::STATE_OPEN);
  }
  return e;
}

// View describes what one holder knows of a notice, in one line.
std::string View(const v1::CaseEvent& e) {
  std::vector<std::string> parts;
  if (e.role() == v1::QueryNotice::ROLE_PUBLISHED) {
    for (const auto& d : e.deliveries()) {
      parts.push_back(absl::StrCat("sent to ", d.destination(), " seq ", d.seq(),
                                   d.receipted() ? ", receipted" : ", not yet receipted"));
    }
    if (parts.empty()) parts.push_back("published");
  } else {
    parts.push_back(absl::StrCat("received seq ", e.channel_seq(),
                                 e.consumed() ? ", taken by the office's system"
                                              : ", not yet taken from the inbox"));
  }
  for (const v1::TodoItem& r : e.replies()) {
    // Items from a peer's answer carry only who owes the reply.
    const std::string owed_by =
        r.side() == v1::TodoRequest::SIDE_OWED_BY_US ? e.holder() : r.peer();
    std::string state = r.overdue() ? "OVERDUE"
                        : r.state() == v1::TodoItem::STATE_OPEN
                            ? "open"
                            : absl::AsciiStrToLower(v1::TodoItem::State_Name(r.state()).substr(6));
    if (!r.cleared_by().empty()) absl::StrAppend(&state, " by ", r.cleared_by());
    parts.push_back(absl::StrCat("reply owed by ", owed_by,
                                 r.has_due() ? absl::StrCat(" due ", Cst(r.due())) : "", ": ",
                                 state));
  }
  return absl::StrCat("at ", e.holder(), ": ", absl::StrJoin(parts, "; "));
}

void PrintTimeline(const std::string& case_id, const google::protobuf::RepeatedPtrField<v1::CaseEvent>& events,
                   const std::vector<std::string>& asked) {
  // One block per notice (origin, id), in the order of its first event.
  std::vector<std::pair<std::string, std::string>> order;
  std::map<std::pair<std::string, std::string>, std::vector<const v1::CaseEvent*>> by_notice;
  for (const v1::CaseEvent& e : events) {
    auto key = std::make_pair(e.notice().origin(), e.notice().notice_id());
    auto& list = by_notice[key];
    if (list.empty()) order.push_back(key);
    list.push_back(&e);
  }
  printf("case %s: %zu notice%s", case_id.c_str(), order.size(), order.size() == 1 ? "" : "s");
  if (!asked.empty()) printf(" (peers asked: %s)", absl::StrJoin(asked, ", ").c_str());
  printf("\n");
  for (const auto& key : order) {
    const v1::Notice& n = by_notice[key].front()->notice();
    std::string what = caseway::common::NoticeKind(n);
    if (!n.in_reply_to().empty()) absl::StrAppend(&what, " to ", n.in_reply_to());
    if (n.revision() > 0) absl::StrAppend(&what, " (revision ", n.revision(), ")");
    printf("\n%s  %s -> %s  %s  %s%s\n", Cst(n.occurred_at()).c_str(), n.origin().c_str(),
           absl::StrJoin(n.destinations(), ",").c_str(), n.notice_id().c_str(), what.c_str(),
           n.priority() == v1::PRIORITY_SUBJECT ? "  [priority subject]" : "");
    for (const v1::CaseEvent* e : by_notice[key]) printf("    %s\n", View(*e).c_str());
  }
}

}  // namespace

int RunQuery(caseway::client::Client& client, const QueryFlags& f) {
  if (f.case_id.empty() == f.subject.empty()) {
    fprintf(stderr, "caseway query: give exactly one of --case and --subject\n");
    return 2;
  }
  v1::QueryPeerRequest req;
  req.set_peer(f.peer);
  if (!f.case_id.empty()) req.set_case_id(f.case_id);
  if (!f.subject.empty()) req.set_id_number(f.subject);
  auto resp = client.QueryPeer(req);
  if (!resp.ok()) {
    PrintError("query", resp.status());
    return 1;
  }
  if (f.json) {
    printf("%s\n", ProtoJson(*resp).c_str());
    return 0;
  }
  const v1::QueryAnswer& a = resp->parsed();
  printf("%s answered %s: %d notice%s%s (signed by %s, its log entry %llu; recorded here as "
         "entry %llu)\n",
         a.answerer().c_str(), Cst(a.answered_at()).c_str(), a.notices_size(),
         a.notices_size() == 1 ? "" : "s", a.truncated() ? " (truncated)" : "",
         resp->answer().signer().c_str(), static_cast<unsigned long long>(a.log_index()),
         static_cast<unsigned long long>(resp->log_index()));
  for (int i = 0; i < a.notices_size(); ++i) {
    const v1::Notice& n = resp->notices(i);
    v1::CaseEvent e = EventOf(a.answerer(), a.asker(), a.notices(i), n);
    printf("  %s  %s -> %s  %s  %s  case %s\n    %s\n", Cst(n.occurred_at()).c_str(),
           n.origin().c_str(), absl::StrJoin(n.destinations(), ",").c_str(),
           n.notice_id().c_str(), caseway::common::NoticeKind(n).c_str(), n.case_id().c_str(),
           View(e).c_str());
  }
  return 0;
}

int RunCase(caseway::client::Client& client, const CaseFlags& f) {
  auto local = client.Case(f.case_id);
  if (!local.ok()) {
    PrintError("case", local.status());
    return 1;
  }
  google::protobuf::RepeatedPtrField<v1::CaseEvent> events = local->events();
  std::vector<std::string> asked;
  int failures = 0;
  if (f.peers || !f.peer_list.empty()) {
    std::string self;
    std::set<std::string> peers(f.peer_list.begin(), f.peer_list.end());
    for (const v1::CaseEvent& e : events) self = e.holder();
    if (f.peers) {
      for (const v1::CaseEvent& e : events) {
        peers.insert(e.notice().origin());
        for (const auto& d : e.notice().destinations()) peers.insert(d);
      }
      if (events.empty()) {
        // Nothing here names the parties: ask every peer this node exchanges with.
        auto status = client.Status();
        if (status.ok()) {
          self = status->jurisdiction();
          for (const auto& c : status->channels()) peers.insert(c.destination());
          for (const auto& s : status->subscriptions()) peers.insert(s.origin());
        }
      }
    }
    peers.erase(self);
    peers.erase("");
    for (const std::string& peer : peers) {
      v1::QueryPeerRequest req;
      req.set_peer(peer);
      req.set_case_id(f.case_id);
      auto answer = client.QueryPeer(req);
      if (!answer.ok()) {
        PrintError("case: asking", answer.status());
        ++failures;
        continue;
      }
      asked.push_back(peer);
      for (int i = 0; i < answer->parsed().notices_size(); ++i) {
        *events.Add() = EventOf(peer, answer->parsed().asker(), answer->parsed().notices(i),
                                answer->notices(i));
      }
    }
  }
  caseway::common::SortCaseEvents(&events);
  if (f.json) {
    for (const v1::CaseEvent& e : events) printf("%s\n", ProtoJson(e).c_str());
  } else {
    PrintTimeline(f.case_id, events, asked);
    if (local->truncated()) printf("\n(truncated: the case holds more than 10,000 notices here)\n");
  }
  return failures == 0 ? 0 : 1;
}

int RunAccess(caseway::client::Client& client, const AccessFlags& f) {
  v1::AccessLogRequest req;
  req.set_id_number(f.id_number);
  if (!f.json) {
    printf("%-5s %-16s %-15s %-8s %-6s %s\n", "ID", "AT (CST)", "WHAT", "PEER", "NOTICES",
           "WHO / PURPOSE");
  }
  do {
    auto page = client.AccessLog(req);
    if (!page.ok()) {
      PrintError("audit access", page.status());
      return 1;
    }
    for (const v1::AccessRecord& r : page->records()) {
      if (f.json) {
        printf("%s\n", ProtoJson(r).c_str());
        continue;
      }
      printf("%-5llu %-16s %-15s %-8s %-7u %s\n      purpose: %s\n",
             static_cast<unsigned long long>(r.id()), Cst(r.at()).c_str(), r.what().c_str(),
             r.peer().empty() ? "-" : r.peer().c_str(), r.notices(), r.who().c_str(),
             r.purpose().c_str());
    }
    req.set_after(page->next());
  } while (req.after() != 0);
  return 0;
}

}  // namespace caseway::cli
