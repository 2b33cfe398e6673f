// caseway: the command-line client of a Caseway node (publish, inbox, status, todo, query, case,
// audit, department).
#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "caseway/client/client.h"
#include "client/cli/audit_commands.h"
#include "client/cli/case_commands.h"
#include "client/cli/conformance.h"
#include "client/cli/department_commands.h"
#include "client/cli/status_command.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/json.h"
#include "common/policy.h"
#include "common/refusal.h"
#include "common/tls.h"

namespace {

using caseway::client::Client;
using caseway::client::ConnectionOptions;
namespace v1 = caseway::v1;

struct Connection {
  std::string config;
  ConnectionOptions options;
};

void AddConnectionFlags(CLI::App* app, Connection* c) {
  app->add_option("--client-config", c->config,
                  "client YAML file with address, ca_file, cert_file, key_file "
                  "(default: $CASEWAY_CLIENT_CONFIG); flags below override it");
  app->add_option("--address", c->options.address, "node address host:port");
  app->add_option("--ca", c->options.ca_file, "federation CA certificate (PEM)");
  app->add_option("--cert", c->options.cert_file, "client certificate (PEM)");
  app->add_option("--key", c->options.key_file, "client private key (PEM)");
  app->add_option("--purpose", c->options.purpose,
                  "why this reads personal data (inbox, case, query, audit access), kept in the "
                  "node's access log; overrides the client file's `purpose` (the last one given "
                  "counts)")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
}

// Open connects as the connection flags say. `default_purpose` is used when neither --purpose
// nor the client file gives one (a fixed procedure such as the conformance check).
absl::StatusOr<std::unique_ptr<Client>> Open(const Connection& c,
                                             const std::string& default_purpose = "") {
  ConnectionOptions o;
  std::string path = c.config;
  if (path.empty() && getenv("CASEWAY_CLIENT_CONFIG") != nullptr) {
    path = getenv("CASEWAY_CLIENT_CONFIG");
  }
  if (!path.empty()) {
    auto loaded = caseway::client::LoadClientConfig(path);
    if (!loaded.ok()) return loaded.status();
    o = *loaded;
  }
  if (!c.options.address.empty()) o.address = c.options.address;
  if (!c.options.ca_file.empty()) o.ca_file = c.options.ca_file;
  if (!c.options.cert_file.empty()) o.cert_file = c.options.cert_file;
  if (!c.options.key_file.empty()) o.key_file = c.options.key_file;
  if (!c.options.purpose.empty()) o.purpose = c.options.purpose;
  if (o.purpose.empty()) o.purpose = default_purpose;
  for (auto [flag, v] : {std::pair<const char*, const std::string*>{"--address", &o.address},
                         {"--ca", &o.ca_file}, {"--cert", &o.cert_file}, {"--key", &o.key_file}}) {
    if (v->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": required (or give --client-config / $CASEWAY_CLIENT_CONFIG)"));
    }
  }
  return Client::Connect(o);
}

using caseway::common::ProtoJson;

using caseway::common::JsonQuote;

// PendingLine is a parsed input line waiting to be published.
struct PendingLine {
  size_t line;
  v1::Notice notice;
};

// Result lines wait here until every earlier line is settled, so output follows input order
// even when several batches are in flight (--jobs). Blank lines settle with no output.
std::mutex g_results_mu;
std::map<size_t, std::string> g_results;  // guarded by g_results_mu
size_t g_next_line = 1;                   // guarded by g_results_mu

void Settle(size_t line, std::string text) {
  std::lock_guard<std::mutex> lock(g_results_mu);
  g_results[line] = std::move(text);
  bool printed = false;
  for (auto it = g_results.begin(); it != g_results.end() && it->first == g_next_line;
       it = g_results.erase(it), ++g_next_line) {
    fputs(it->second.c_str(), stdout);
    printed = true;
  }
  if (printed) fflush(stdout);
}

void PrintOk(size_t line, const v1::PublishResult& r) {
  std::string deliveries;
  for (const auto& d : r.deliveries()) {
    absl::StrAppend(&deliveries, deliveries.empty() ? "" : ",", "{\"destination\":",
                    JsonQuote(d.destination()), ",\"seq\":", d.seq(), "}");
  }
  std::string warnings;
  for (const auto& w : r.warnings()) absl::StrAppend(&warnings, warnings.empty() ? "" : ",", JsonQuote(w));
  Settle(line, absl::StrFormat(
      "{\"line\":%zu,\"status\":\"OK\",\"notice_id\":%s,\"duplicate\":%s,\"digest\":\"%s\","
      "\"deliveries\":[%s],\"warnings\":[%s]}\n",
      line, JsonQuote(r.notice_id()), r.duplicate() ? "true" : "false",
         caseway::common::ToHex(r.digest()), deliveries, warnings));
}

void PrintError(size_t line, absl::string_view notice_id, const absl::Status& s) {
  Settle(line, absl::StrFormat("{\"line\":%zu,\"status\":\"%s\",\"notice_id\":%s,\"error\":%s}\n",
                               line, absl::StatusCodeToString(s.code()), JsonQuote(notice_id),
                               JsonQuote(s.message())));
}

// PublishPending publishes `batch`, isolating failures: when the node names `notices[i]`, that
// line is reported and the rest is retried. Returns the number of failed lines.
size_t PublishPending(Client& client, std::vector<PendingLine> batch, bool dry_run) {
  static const std::regex kIndex("^notices\\[([0-9]+)\\]\\.?(.*)$");
  size_t failed = 0;
  while (!batch.empty()) {
    absl::StatusOr<std::vector<v1::PublishResult>> results;
    if (batch.size() == 1) {
      auto one = client.Publish(batch[0].notice, dry_run);
      if (one.ok()) results = std::vector<v1::PublishResult>{*one};
      else results = one.status();
    } else {
      std::vector<v1::Notice> notices;
      notices.reserve(batch.size());
      for (const auto& p : batch) notices.push_back(p.notice);
      results = client.PublishBatch(notices, dry_run);
    }
    if (results.ok()) {
      for (size_t i = 0; i < batch.size(); ++i) PrintOk(batch[i].line, (*results)[i]);
      return failed;
    }
    // Every bad notice the node named in the details: each line gets its own fields, and the
    // rest of the batch is sent again.
    std::map<size_t, std::vector<std::string>> bad;
    for (const auto& v : caseway::common::ViolationsOf(results.status())) {
      std::smatch vm;
      if (batch.size() > 1 && std::regex_search(v.field, vm, kIndex) &&
          std::stoul(vm[1]) < batch.size()) {
        bad[std::stoul(vm[1])].push_back(absl::StrCat("notice.", std::string(vm[2]), ": ", v.description));
      }
    }
    if (!bad.empty()) {
      for (auto it = bad.rbegin(); it != bad.rend(); ++it) {
        PrintError(batch[it->first].line, batch[it->first].notice.notice_id(),
                   absl::Status(results.status().code(), absl::StrJoin(it->second, "; ")));
        ++failed;
        batch.erase(batch.begin() + it->first);
      }
      continue;
    }
    if (batch.size() == 1) {
      // One notice: every bad field of it, not only the first the message names.
      std::vector<std::string> fields;
      for (const auto& v : caseway::common::ViolationsOf(results.status())) {
        fields.push_back(absl::StrCat(v.field, ": ", v.description));
      }
      if (!fields.empty()) {
        PrintError(batch[0].line, batch[0].notice.notice_id(),
                   absl::Status(results.status().code(), absl::StrJoin(fields, "; ")));
        return failed + 1;
      }
    }
    std::smatch m;
    std::string msg(results.status().message());
    if (batch.size() > 1 && std::regex_search(msg, m, kIndex)) {
      size_t i = std::stoul(m[1]);
      if (i < batch.size()) {
        std::string field = m[2];
        PrintError(batch[i].line, batch[i].notice.notice_id(),
                   absl::Status(results.status().code(), absl::StrCat("notice.", field)));
        ++failed;
        batch.erase(batch.begin() + i);
        continue;
      }
    }
    for (const auto& p : batch) PrintError(p.line, p.notice.notice_id(), results.status());
    return failed + batch.size();
  }
  return failed;
}

// ReadDelimited reads one length-delimited record (a base-128 varint length, then that many
// bytes: what protobuf's writeDelimitedTo / SerializeDelimitedToOstream write). Returns false at
// a clean end of input; a cut or oversized record is an error naming the record and the rule.
bool ReadDelimited(std::istream& in, size_t record, std::string* out, std::string* error) {
  uint64_t length = 0;
  int shift = 0;
  for (;;) {
    const int c = in.get();
    if (c == EOF) {
      if (shift == 0) return false;
      *error = absl::StrCat("record ", record, ": the input ends inside its length");
      return false;
    }
    if (shift >= 35) {
      *error = absl::StrCat("record ", record, ": its length is not a varint of at most 5 bytes");
      return false;
    }
    length |= uint64_t(c & 0x7f) << shift;
    shift += 7;
    if ((c & 0x80) == 0) break;
  }
  constexpr uint64_t kMaxRecord = 64 << 20;  // the largest gRPC message a node accepts
  if (length > kMaxRecord) {
    *error = absl::StrCat("record ", record, ": a length of ", length, " bytes, over the ",
                          kMaxRecord, " a notice can have");
    return false;
  }
  out->resize(length);
  if (length > 0 && !in.read(out->data(), static_cast<std::streamsize>(length))) {
    *error = absl::StrCat("record ", record, ": the input ends after ", in.gcount(), " of its ",
                          length, " bytes");
    return false;
  }
  return true;
}

int RunPublish(const Connection& conn, const std::string& file, size_t batch_size, int jobs,
               bool progress, bool dry_run, bool binary) {
  std::istream* in = &std::cin;
  std::ifstream f;
  if (file != "-") {
    f.open(file, std::ios::binary);
    if (!f) {
      fprintf(stderr, "caseway publish: %s: cannot open for reading\n", file.c_str());
      return 2;
    }
    in = &f;
  }
  auto client = Open(conn);
  if (!client.ok()) {
    fprintf(stderr, "caseway publish: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;

  // The reader (this thread) only splits lines into batches; each of the `jobs` senders parses
  // its batch (protobuf JSON parsing is most of the CLI's time) and publishes it. Results are
  // printed in input order whatever the order of completion.
  struct RawLine {
    size_t line;
    std::string text;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<RawLine>> queue;  // guarded by mu, at most 2 * jobs batches
  bool eof = false;
  std::atomic<size_t> ok{0}, failed{0};
  std::vector<std::thread> senders;
  for (int j = 0; j < jobs; ++j) {
    senders.emplace_back([&] {
      for (;;) {
        std::vector<RawLine> raw;
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return !queue.empty() || eof; });
          if (queue.empty()) return;
          raw = std::move(queue.front());
          queue.pop_front();
        }
        cv.notify_all();
        std::vector<PendingLine> batch;
        batch.reserve(raw.size());
        for (RawLine& r : raw) {
          PendingLine p{r.line, {}};
          if (binary) {
            if (!p.notice.ParseFromString(r.text)) {
              PrintError(r.line, "",
                         absl::InvalidArgumentError(absl::StrCat(
                             "record ", r.line, ": not a caseway.v1.Notice in binary protobuf")));
              ++failed;
              continue;
            }
            batch.push_back(std::move(p));
            continue;
          }
          auto st = google::protobuf::util::JsonStringToMessage(r.text, &p.notice, options);
          if (!st.ok()) {
            PrintError(r.line, "",
                       absl::InvalidArgumentError(absl::StrCat(
                           "line ", r.line, ": not a caseway.v1.Notice in protobuf JSON: ",
                           std::string(st.message()))));
            ++failed;
            continue;
          }
          batch.push_back(std::move(p));
        }
        size_t n = batch.size();
        size_t bad = n == 0 ? 0 : PublishPending(**client, std::move(batch), dry_run);
        failed += bad;
        ok += n - bad;
        if (progress) {
          fprintf(stderr, "\r%s %zu, failed %zu", dry_run ? "valid" : "published", ok.load(),
                  failed.load());
        }
      }
    });
  }
  auto enqueue = [&](std::vector<RawLine> batch) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return queue.size() < static_cast<size_t>(2 * jobs); });
    queue.push_back(std::move(batch));
    cv.notify_all();
  };
  std::vector<RawLine> pending;
  size_t line_no = 0;
  std::string line, cut;
  while (binary) {
    if (!ReadDelimited(*in, line_no + 1, &line, &cut)) break;
    pending.push_back({++line_no, std::move(line)});
    if (pending.size() >= batch_size) {
      enqueue(std::move(pending));
      pending.clear();
    }
  }
  while (!binary && std::getline(*in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      Settle(line_no, "");
      continue;
    }
    pending.push_back({line_no, std::move(line)});
    if (pending.size() >= batch_size) {
      enqueue(std::move(pending));
      pending.clear();
    }
  }
  if (!pending.empty()) enqueue(std::move(pending));
  {
    std::lock_guard<std::mutex> lock(mu);
    eof = true;
  }
  cv.notify_all();
  for (auto& t : senders) t.join();
  if (progress) fprintf(stderr, "\n");
  if (!cut.empty()) {  // the records before it were published; nothing after it can be read
    PrintError(line_no + 1, "", absl::InvalidArgumentError(cut));
    fprintf(stderr, "caseway publish: %s\n", cut.c_str());
    ++failed;
  }
  if (dry_run) {
    fprintf(stderr, "caseway publish: dry run: %zu valid, %zu failed (nothing stored)\n", ok.load(),
            failed.load());
  } else {
    fprintf(stderr, "caseway publish: %zu published, %zu failed\n", ok.load(), failed.load());
  }
  return failed == 0 ? 0 : 1;
}

int RunInbox(const Connection& conn, bool follow, bool ack, uint32_t window, size_t limit) {
  auto client = Open(conn);
  if (!client.ok()) {
    fprintf(stderr, "caseway inbox: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  size_t count = 0;
  absl::Status unprintable;
  caseway::client::InboxOptions options{follow, ack, window};
  absl::Status s = (*client)->Inbox(options, [&](const v1::InboxItem& item) {
    // An item that cannot be printed whole is not printed, not counted and not acknowledged:
    // the consumer never got it intact.
    auto json = caseway::common::CheckedProtoJson(item);
    if (!json.ok()) {
      unprintable = absl::DataLossError(absl::StrCat("inbox_seq ", item.inbox_seq(), ": ",
                                                     json.status().message(),
                                                     " (left unacknowledged)"));
      return false;
    }
    printf("%s\n", json->c_str());
    fflush(stdout);
    ++count;
    return limit == 0 || count < limit;
  });
  if (s.ok()) s = unprintable;
  if (!s.ok()) {
    fprintf(stderr, "caseway inbox: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
            std::string(s.message()).c_str());
    return 1;
  }
  fprintf(stderr, "caseway inbox: %zu notice(s)%s\n", count, ack ? " acknowledged" : "");
  return 0;
}

int RunStatus(const Connection& conn, const caseway::cli::StatusFlags& flags) {
  auto client = Open(conn);
  if (!client.ok()) {
    fprintf(stderr, "caseway status: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  return caseway::cli::RunStatus(**client, flags);
}

struct TodoFlags {
  bool owed_by_us = false, owed_to_us = false, overdue = false, all = false, json = false;
  std::string kind, peer, priority;
  uint32_t limit = 0;
};

std::string CstTime(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M", absl::FromUnixSeconds(t.seconds()),
                          caseway::common::ChinaStandardTime());
}

int RunTodo(const Connection& conn, const TodoFlags& f) {
  v1::TodoRequest req;
  if (f.owed_by_us && f.owed_to_us) {
    fprintf(stderr, "caseway todo: --owed-by-us and --owed-to-us exclude each other (neither: both)\n");
    return 2;
  }
  req.set_side(f.owed_by_us   ? v1::TodoRequest::SIDE_OWED_BY_US
               : f.owed_to_us ? v1::TodoRequest::SIDE_OWED_TO_US
                              : v1::TodoRequest::SIDE_UNSPECIFIED);
  req.set_kind(f.kind);
  req.set_peer(f.peer);
  if (f.priority == "subject") {
    req.set_priority(v1::PRIORITY_SUBJECT);
  } else if (f.priority == "normal") {
    req.set_priority(v1::PRIORITY_NORMAL);
  } else if (!f.priority.empty()) {
    fprintf(stderr, "caseway todo: --priority: %s is not normal or subject\n", f.priority.c_str());
    return 2;
  }
  req.set_overdue_only(f.overdue);
  req.set_include_cleared(f.all);
  req.set_limit(f.limit);
  auto client = Open(conn);
  if (!client.ok()) {
    fprintf(stderr, "caseway todo: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  auto todo = (*client)->Todo(req);
  if (!todo.ok()) {
    fprintf(stderr, "caseway todo: %s: %s\n", absl::StatusCodeToString(todo.status().code()).c_str(),
            std::string(todo.status().message()).c_str());
    return 1;
  }
  if (f.json) {
    for (const auto& item : todo->items()) printf("%s\n", ProtoJson(item).c_str());
    for (const auto& a : todo->anomalies()) printf("{\"anomaly\":%s}\n", ProtoJson(a).c_str());
    return 0;
  }
  printf("we owe %llu repl%s (%llu overdue); we are owed %llu\n\n",
         static_cast<unsigned long long>(todo->owed_by_us()), todo->owed_by_us() == 1 ? "y" : "ies",
         static_cast<unsigned long long>(todo->overdue_by_us()),
         static_cast<unsigned long long>(todo->owed_to_us()));
  if (todo->items_size() > 0) {
    printf("%-10s %-8s %-28s %-26s %-8s %-17s %6s  %s\n", "SIDE", "PEER", "NOTICE", "KIND", "PRIORITY",
           "DUE (CST)", "LEFT", "STATE");
  }
  for (const auto& i : todo->items()) {
    std::string state = i.overdue() ? "OVERDUE"
                        : i.state() == v1::TodoItem::STATE_OPEN
                            ? "open"
                            : absl::AsciiStrToLower(v1::TodoItem::State_Name(i.state()).substr(6));
    if (i.due_mismatch()) absl::StrAppend(&state, " (sender's due ", CstTime(i.stated_due()), ")");
    if (!i.cleared_by().empty()) absl::StrAppend(&state, " by ", i.cleared_by());
    printf("%-10s %-8s %-28s %-26s %-8s %-17s %5dw  %s\n",
           i.side() == v1::TodoRequest::SIDE_OWED_BY_US ? "we owe" : "owed us", i.peer().c_str(),
           i.notice_id().c_str(), i.kind().c_str(),
           i.priority() == v1::PRIORITY_SUBJECT ? "subject" : "normal", CstTime(i.due()).c_str(),
           i.working_days_left(), state.c_str());
  }
  if (todo->anomalies_size() > 0) {
    printf("\nANOMALIES (received notices that name nothing known here)\n");
    for (const auto& a : todo->anomalies()) {
      printf("  %s from %s: %s\n", a.notice_id().c_str(), a.peer().c_str(), a.problem().c_str());
    }
  }
  return 0;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{
      "caseway: the command-line client of a Caseway node.\n"
      "Connection settings come from --client-config (or $CASEWAY_CLIENT_CONFIG) and flags."};
  app.set_version_flag("--version", "caseway 0.1.0");
  app.require_subcommand(1);

  Connection conn;
  std::string file = "-";
  size_t batch = 100;
  int jobs = 1;
  bool progress = false;
  CLI::App* publish = app.add_subcommand(
      "publish",
      "Publish notices from FILE or stdin: protobuf JSON, one caseway.v1.Notice per line, or\n"
      "with --format binpb length-delimited binary caseway.v1.Notice records (for bulk loads).\n"
      "Prints one JSON result line per notice (\"line\" is the record's number in binpb);\n"
      "exit 0 when all succeeded, 1 when any failed.");
  publish->add_option("file", file, "input file (JSON lines, or binary records with --format binpb), or - for stdin")->capture_default_str();
  std::string format = "json";
  publish->add_option("--format", format,
                      "json: protobuf JSON lines; binpb: varint-length-delimited binary notices")
      ->capture_default_str()
      ->check(CLI::IsMember({"json", "binpb"}));
  publish->add_option("--batch", batch, "notices per PublishBatch request (1 = unary Publish)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  publish->add_option("--jobs,-j", jobs, "batches in flight at once (output stays in input order)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  publish->add_flag("--progress", progress, "show a running count on stderr");
  bool dry_run = false;
  publish->add_flag("--dry-run", dry_run,
                    "check every notice as the node would (fields, peers, replies, ids already "
                    "taken) and store nothing");
  AddConnectionFlags(publish, &conn);

  bool follow = false, ack = false;
  uint32_t window = 0;
  size_t limit = 0;
  CLI::App* inbox = app.add_subcommand(
      "inbox", "Print received, unacknowledged notices as JSON lines (caseway.v1.InboxItem).");
  inbox->add_flag("--follow,-f", follow, "keep printing notices as they arrive");
  inbox->add_flag("--ack", ack, "acknowledge each notice once printed");
  inbox->add_option("--window", window, "with --ack: most unacknowledged in flight (0 = 256)");
  inbox->add_option("--limit", limit, "stop after this many notices (0 = no limit)");
  AddConnectionFlags(inbox, &conn);

  caseway::cli::StatusFlags status_flags;
  CLI::App* status = app.add_subcommand(
      "status",
      "Show channels (heads, acked), subscriptions (cursors, peer heads, lag, last contact) and\n"
      "inbox. Exit status: 0 healthy, 1 halted or (with --check) a problem, 2 node not reached.");
  status->add_flag("--json", status_flags.json,
                   "print caseway.v1.StatusResponse as JSON, every field (zeros too)");
  status->add_flag("--check", status_flags.check,
                   "also list problems on stderr and exit 1 if any: a peer not connected, a\n"
                   "backlog or inbox older than its limit, a certificate near its end, a witness\n"
                   "finding, another policy, a skewed clock, a halted node");
  status->add_option("--backlog-age", status_flags.backlog_age,
                     "with --check: oldest notice a destination may leave unacknowledged")
      ->capture_default_str();
  status->add_option("--inbox-age", status_flags.inbox_age,
                     "with --check: oldest notice the local consumer may leave untaken")
      ->capture_default_str();
  status->add_option("--cert-days", status_flags.cert_days,
                     "with --check: least days of certificate validity left")
      ->capture_default_str();
  status->add_option("--down-for", status_flags.down_for,
                     "with --check: how long a subscription may be down (not heard from) before\n"
                     "it is a problem (a peer's restart is not)")
      ->capture_default_str();
  AddConnectionFlags(status, &conn);

  TodoFlags todo_flags;
  CLI::App* todo = app.add_subcommand(
      "todo",
      "What this office owes its peers (received notices awaiting its reply) and what it is owed\n"
      "(its notices awaiting a peer's reply), overdue first; LEFT is working days to the due day.");
  todo->add_flag("--owed-by-us", todo_flags.owed_by_us, "only replies this office owes");
  todo->add_flag("--owed-to-us", todo_flags.owed_to_us, "only replies owed to this office");
  todo->add_option("--kind", todo_flags.kind, "only this notice kind, e.g. verification_request");
  todo->add_option("--peer", todo_flags.peer, "only items with this peer (region code)");
  todo->add_option("--priority", todo_flags.priority, "only this priority: normal or subject");
  todo->add_flag("--overdue", todo_flags.overdue, "only items past their due time");
  todo->add_flag("--all", todo_flags.all, "also items already answered, voided or superseded");
  todo->add_option("--limit", todo_flags.limit, "at most this many items (0 = 1000)")
      ->check(CLI::Range(0, 10000));
  todo->add_flag("--json", todo_flags.json, "print caseway.v1.TodoItem JSON lines");
  AddConnectionFlags(todo, &conn);

  caseway::cli::QueryFlags query_flags;
  CLI::App* query = app.add_subcommand(
      "query",
      "Ask a peer node, through this node, what it holds about a case: the notices in which this\n"
      "jurisdiction is a party. The peer's answer is signed and recorded in both exchange logs.");
  query->add_option("peer", query_flags.peer, "the peer jurisdiction (region code)")->required();
  query->add_option("--case", query_flags.case_id, "the case id");
  query->add_option("--subject", query_flags.subject,
                    "the subject's identity number (never logged; only digests are recorded)");
  query->add_flag("--json", query_flags.json, "print caseway.v1.QueryPeerResponse as JSON");
  AddConnectionFlags(query, &conn);

  caseway::cli::CaseFlags case_flags;
  CLI::App* case_cmd = app.add_subcommand(
      "case",
      "Show a case's timeline: every notice sent and received for it, oldest first, with its\n"
      "delivery, receipt and reply state; --peers adds what each peer party answers.");
  case_cmd->add_option("case_id", case_flags.case_id, "the case id")->required();
  case_cmd->add_flag("--peers", case_flags.peers,
                     "also ask every peer party of the case (remote queries, logged)");
  case_cmd->add_option("--peer", case_flags.peer_list, "also ask this peer (repeatable)");
  case_cmd->add_flag("--json", case_flags.json, "print caseway.v1.CaseEvent JSON lines");
  AddConnectionFlags(case_cmd, &conn);

  caseway::cli::ConformanceFlags conformance_flags;
  CLI::App* conformance = app.add_subcommand(
      "conformance",
      "Check the node you deployed with your own client certificate: publish test notices to the\n"
      "federation's test destination, then check the round trip, idempotency, the refusals of\n"
      "bad input, the case timeline and the inbox. Prints a pass/fail table; exit 1 on a failure.");
  conformance->add_option("--destination", conformance_flags.destination,
                          "the federation's test destination (a peer whose inbox nobody uses)")
      ->required();
  conformance->add_option("--timeout", conformance_flags.timeout_seconds,
                          "seconds the round trip may take (default 30)")
      ->check(CLI::Range(1, 3600));
  AddConnectionFlags(conformance, &conn);

  caseway::cli::AuditCommands audit_commands;
  caseway::cli::AddAuditCommands(app, &audit_commands);
  caseway::cli::AccessFlags access_flags;
  CLI::App* access = app.get_subcommand("audit")->add_subcommand(
      "access",
      "Who read one person's data on this node (inbox deliveries, case timelines, query answers\n"
      "given and received, coordinators' evidence reads), oldest first, from the node's access\n"
      "log; run as this office (the node holds the key that finds the person). The listing is\n"
      "itself recorded. Needs --purpose (or `purpose` in the client file).");
  access->add_option("--subject", access_flags.id_number, "the person's identity number")
      ->required();
  access->add_flag("--json", access_flags.json, "print caseway.v1.AccessRecord JSON lines");
  AddConnectionFlags(access, &conn);

  caseway::cli::DepartmentFlags department_flags;
  caseway::cli::AddDepartmentCommands(app, &department_flags);

  CLI11_PARSE(app, argc, argv);
  if (int rc = caseway::cli::RunDepartment(department_flags); rc >= 0) return rc;
  if (publish->parsed()) return RunPublish(conn, file, batch, jobs, progress, dry_run, format == "binpb");
  if (inbox->parsed()) return RunInbox(conn, follow, ack, window, limit);
  if (status->parsed()) return RunStatus(conn, status_flags);
  if (todo->parsed()) return RunTodo(conn, todo_flags);
  if (query->parsed() || case_cmd->parsed() || conformance->parsed() || access->parsed()) {
    const char* name = query->parsed()      ? "query"
                       : case_cmd->parsed() ? "case"
                       : access->parsed()   ? "audit access"
                                            : "conformance";
    auto client = Open(conn, conformance->parsed() ? "caseway conformance check" : "");
    if (!client.ok()) {
      fprintf(stderr, "caseway %s: %s\n", name, std::string(client.status().message()).c_str());
      return 2;
    }
    if (conformance->parsed()) return caseway::cli::RunConformance(**client, conformance_flags);
    if (access->parsed()) return caseway::cli::RunAccess(**client, access_flags);
    return query->parsed() ? caseway::cli::RunQuery(**client, query_flags)
                           : caseway::cli::RunCase(**client, case_flags);
  }
  if (audit_commands.parsed()) return caseway::cli::RunAuditCommand(audit_commands);
  return 2;
}

// No exception escapes (docs/errors.md): one that reaches here is a bug, reported as such.
int main(int argc, char** argv) {
  caseway::common::KeepOpenSslAtExit();
  try {
    return Main(argc, argv);
  } catch (const std::exception& e) {
    fprintf(stderr, "caseway: internal error: %s\n", e.what());
  } catch (...) {
    fprintf(stderr, "caseway: internal error: unknown exception\n");
  }
  return 1;
}
