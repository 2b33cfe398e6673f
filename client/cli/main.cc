// caseway: the command-line client of a Caseway node (publish, inbox, status).
#include <google/protobuf/util/json_util.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <map>
#include <set>
#include <mutex>
#include <thread>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "caseway/client/client.h"
#include "client/audit/auditor.h"
#include "common/config.h"
#include "common/directory.h"
#include "common/tls.h"
#include "common/digest.h"
#include "common/json.h"

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
}

absl::StatusOr<std::unique_ptr<Client>> Open(const Connection& c) {
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
  for (auto [flag, v] : {std::pair<const char*, const std::string*>{"--address", &o.address},
                         {"--ca", &o.ca_file}, {"--cert", &o.cert_file}, {"--key", &o.key_file}}) {
    if (v->empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": required (or give --client-config / $CASEWAY_CLIENT_CONFIG)"));
    }
  }
  return Client::Connect(o);
}

std::string ToJson(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, options);
  return out;
}

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
size_t PublishPending(Client& client, std::vector<PendingLine> batch) {
  static const std::regex kIndex("^notices\\[([0-9]+)\\]\\.?(.*)$");
  size_t failed = 0;
  while (!batch.empty()) {
    absl::StatusOr<std::vector<v1::PublishResult>> results;
    if (batch.size() == 1) {
      auto one = client.Publish(batch[0].notice);
      if (one.ok()) results = std::vector<v1::PublishResult>{*one};
      else results = one.status();
    } else {
      std::vector<v1::Notice> notices;
      notices.reserve(batch.size());
      for (const auto& p : batch) notices.push_back(p.notice);
      results = client.PublishBatch(notices);
    }
    if (results.ok()) {
      for (size_t i = 0; i < batch.size(); ++i) PrintOk(batch[i].line, (*results)[i]);
      return failed;
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

int RunPublish(const Connection& conn, const std::string& file, size_t batch_size, int jobs,
               bool progress) {
  std::istream* in = &std::cin;
  std::ifstream f;
  if (file != "-") {
    f.open(file);
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

  // The reader (this thread) parses batches; `jobs` senders publish them concurrently.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<PendingLine>> queue;  // guarded by mu, at most 2 * jobs batches
  bool eof = false;
  std::atomic<size_t> ok{0}, failed{0};
  std::vector<std::thread> senders;
  for (int j = 0; j < jobs; ++j) {
    senders.emplace_back([&] {
      for (;;) {
        std::vector<PendingLine> batch;
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait(lock, [&] { return !queue.empty() || eof; });
          if (queue.empty()) return;
          batch = std::move(queue.front());
          queue.pop_front();
        }
        cv.notify_all();
        size_t n = batch.size();
        size_t bad = PublishPending(**client, std::move(batch));
        failed += bad;
        ok += n - bad;
        if (progress) fprintf(stderr, "\rpublished %zu, failed %zu", ok.load(), failed.load());
      }
    });
  }
  auto enqueue = [&](std::vector<PendingLine> batch) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return queue.size() < static_cast<size_t>(2 * jobs); });
    queue.push_back(std::move(batch));
    cv.notify_all();
  };
  std::vector<PendingLine> pending;
  size_t line_no = 0;
  std::string line;
  while (std::getline(*in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos) {
      Settle(line_no, "");
      continue;
    }
    PendingLine p{line_no, {}};
    auto st = google::protobuf::util::JsonStringToMessage(line, &p.notice, options);
    if (!st.ok()) {
      PrintError(line_no, "",
                 absl::InvalidArgumentError(absl::StrCat(
                     "line ", line_no, ": not a caseway.v1.Notice in protobuf JSON: ",
                     std::string(st.message()))));
      ++failed;
      continue;
    }
    pending.push_back(std::move(p));
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
  fprintf(stderr, "caseway publish: %zu published, %zu failed\n", ok.load(), failed.load());
  return failed == 0 ? 0 : 1;
}

int RunInbox(const Connection& conn, bool follow, bool ack, uint32_t window, size_t limit) {
  auto client = Open(conn);
  if (!client.ok()) {
    fprintf(stderr, "caseway inbox: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  size_t count = 0;
  caseway::client::InboxOptions options{follow, ack, window};
  absl::Status s = (*client)->Inbox(options, [&](const v1::InboxItem& item) {
    printf("%s\n", ToJson(item).c_str());
    fflush(stdout);
    ++count;
    return limit == 0 || count < limit;
  });
  if (!s.ok()) {
    fprintf(stderr, "caseway inbox: %s: %s\n", absl::StatusCodeToString(s.code()).c_str(),
            std::string(s.message()).c_str());
    return 1;
  }
  fprintf(stderr, "caseway inbox: %zu notice(s)%s\n", count, ack ? " acknowledged" : "");
  return 0;
}

int RunStatus(const Connection& conn, bool json) {
  auto client = Open(conn);
  if (!client.ok()) {
    fprintf(stderr, "caseway status: %s\n", std::string(client.status().message()).c_str());
    return 2;
  }
  auto status = (*client)->Status();
  if (!status.ok()) {
    fprintf(stderr, "caseway status: %s: %s\n",
            absl::StatusCodeToString(status.status().code()).c_str(),
            std::string(status.status().message()).c_str());
    return 1;
  }
  if (json) {
    printf("%s\n", ToJson(*status).c_str());
    return 0;
  }
  printf("node %s   inbox: %llu received, %llu unacknowledged\n\n",
         status->jurisdiction().c_str(), static_cast<unsigned long long>(status->inbox_total()),
         static_cast<unsigned long long>(status->inbox_unacked()));
  printf("%-14s %10s %10s %10s %8s\n", "CHANNEL TO", "HEAD", "ACKED", "BEHIND", "STREAMS");
  for (const auto& c : status->channels()) {
    printf("%-14s %10llu %10llu %10llu %8u\n", c.destination().c_str(),
           static_cast<unsigned long long>(c.head()), static_cast<unsigned long long>(c.acked()),
           static_cast<unsigned long long>(c.head() - std::min(c.head(), c.acked())),
           c.open_streams());
  }
  printf("\n%-14s %-22s %10s %10s %8s  %s\n", "SUBSCRIBED TO", "ADDRESS", "CURSOR", "PEER HEAD",
         "LAG", "STATE");
  for (const auto& s : status->subscriptions()) {
    printf("%-14s %-22s %10llu %10llu %8llu  %s\n", s.origin().c_str(), s.address().c_str(),
           static_cast<unsigned long long>(s.cursor()),
           static_cast<unsigned long long>(s.peer_head()),
           static_cast<unsigned long long>(s.lag()), s.state().c_str());
  }
  return 0;
}

// ---- caseway audit -------------------------------------------------------------------------

struct AuditFlags {
  std::string ca, cert, key, directory;
  std::string state_dir, bundle_dir;
  std::string grace = "10m";
  bool progress = false;
  bool bundle_all = false;
};

void AddAuditFlags(CLI::App* app, AuditFlags* f, bool needs_connection) {
  app->add_option("--directory", f->directory,
                  "federation directory with every node's signing key (deploy/pki.sh directory)")
      ->required();
  if (!needs_connection) return;
  app->add_option("--ca", f->ca, "federation CA certificate (PEM)")->required();
  app->add_option("--cert", f->cert, "auditor certificate: spiffe://<federation>/auditor/<name>")
      ->required();
  app->add_option("--key", f->key, "auditor private key (PEM)")->required();
  app->add_option("--state-dir", f->state_dir,
                  "last verified checkpoint per node (default ~/.caseway/audit)");
  app->add_option("--bundle-dir", f->bundle_dir,
                  "where evidence bundles go (default ./audit-bundles/<time>)");
  app->add_flag("--progress", f->progress, "show fetched entry counts on stderr");
}

absl::StatusOr<std::unique_ptr<caseway::client::audit::Auditor>> MakeAuditor(const AuditFlags& f) {
  auto dir = caseway::common::Directory::Load(f.directory);
  if (!dir.ok()) return dir.status();
  auto creds = caseway::common::ChannelCredentials({f.ca, f.cert, f.key});
  if (!creds.ok()) return creds.status();
  caseway::client::audit::AuditOptions o;
  const char* home = getenv("HOME");
  o.state_dir = !f.state_dir.empty() ? f.state_dir : std::string(home ? home : ".") + "/.caseway/audit";
  o.bundle_dir = !f.bundle_dir.empty()
                     ? f.bundle_dir
                     : "audit-bundles/" + absl::FormatTime("%Y%m%dT%H%M%S", absl::Now(),
                                                          absl::LocalTimeZone());
  if (!absl::ParseDuration(f.grace, &o.grace)) {
    return absl::InvalidArgumentError("--grace: a duration like 10m or 30s expected");
  }
  o.progress = f.progress;
  o.bundle_all = f.bundle_all;
  return std::make_unique<caseway::client::audit::Auditor>(o, std::move(*dir), std::move(*creds));
}

std::string Short(absl::string_view hash) { return caseway::common::ToHex(hash).substr(0, 16); }

// ReportFindings prints findings and writes their bundles; returns how many there were.
int ReportFindings(caseway::client::audit::Auditor& auditor,
                   std::vector<caseway::client::audit::Finding>& findings) {
  for (size_t i = 0; i < findings.size(); ++i) {
    auto& f = findings[i];
    auto path = auditor.WriteBundle(f.bundle, absl::StrCat(absl::AsciiStrToLower(f.status), "-",
                                                            f.bundle.origin(), "-", i));
    printf("  %s: %s\n    bundle: %s\n", f.status.c_str(), f.detail.c_str(),
           path.ok() ? path->c_str() : std::string(path.status().message()).c_str());
  }
  return static_cast<int>(findings.size());
}

int PrintVerified(const caseway::client::audit::NodeLog& log) {
  printf("node %s at %s\n", log.jurisdiction.c_str(), log.address.c_str());
  printf("  checkpoint: %llu entries, root %s..., signed by %s\n",
         static_cast<unsigned long long>(log.checkpoint.size), Short(log.checkpoint.root).c_str(),
         log.jurisdiction.c_str());
  printf("  cosigned by: %s\n",
         log.cosigners.empty() ? "(none yet)" : absl::StrJoin(log.cosigners, ", ").c_str());
  return 0;
}

int RunAuditVerify(const AuditFlags& flags, const std::string& node) {
  auto auditor = MakeAuditor(flags);
  if (!auditor.ok()) {
    fprintf(stderr, "caseway audit verify: %s\n", std::string(auditor.status().message()).c_str());
    return 2;
  }
  std::vector<caseway::client::audit::Finding> findings;
  auto log = (*auditor)->Verify(node, &findings);
  if (!log.ok()) {
    fprintf(stderr, "caseway audit verify: %s: %s\n", node.c_str(), log.status().ToString().c_str());
    return 2;
  }
  PrintVerified(*log);
  if (findings.empty()) {
    printf("  every entry rebuilds the signed root; consistent with the last audit\nOK\n");
    return 0;
  }
  ReportFindings(**auditor, findings);
  return 1;
}

int RunAuditReconcile(const AuditFlags& flags, const std::string& a, const std::string& b) {
  auto auditor = MakeAuditor(flags);
  if (!auditor.ok()) {
    fprintf(stderr, "caseway audit reconcile: %s\n",
            std::string(auditor.status().message()).c_str());
    return 2;
  }
  std::vector<caseway::client::audit::Finding> findings;
  auto log_a = (*auditor)->Verify(a, &findings);
  auto log_b = log_a.ok() ? (*auditor)->Verify(b, &findings) : log_a.status();
  if (!log_a.ok() || !log_b.ok()) {
    absl::Status s = !log_a.ok() ? log_a.status() : log_b.status();
    fprintf(stderr, "caseway audit reconcile: %s\n", s.ToString().c_str());
    return 2;
  }
  PrintVerified(*log_a);
  PrintVerified(*log_b);
  auto report = (*auditor)->Reconcile(*log_a, *log_b);
  if (!report.ok()) {
    fprintf(stderr, "caseway audit reconcile: %s\n", report.status().ToString().c_str());
    return 2;
  }
  for (auto& f : report->findings) findings.push_back(std::move(f));
  const std::string ab = log_a->jurisdiction + "->" + log_b->jurisdiction;
  const std::string ba = log_b->jurisdiction + "->" + log_a->jurisdiction;
  std::map<std::string, std::pair<int, int>> counts;
  for (const char* st : {"PROVEN", "MATCHED", "CONFLICT", "RECEIVER_OMITTED", "SENDER_OMITTED",
                         "UNSUPPORTED", "PENDING", "UNDELIVERED", "DUPLICATE"}) {
    counts[st] = {0, 0};
  }
  for (const auto& r : report->rows) {
    auto& c = counts[r.status];
    (r.origin == log_a->jurisdiction ? c.first : c.second)++;
  }
  printf("\n%-18s %16s %16s %8s\n", "STATUS", ab.c_str(), ba.c_str(), "TOTAL");
  for (const auto& [st, c] : counts) {
    printf("%-18s %16d %16d %8d\n", st.c_str(), c.first, c.second, c.first + c.second);
  }
  int problems = 0;
  std::vector<std::string> lines;
  for (auto& r : report->rows) {
    if (!caseway::client::audit::IsProblem(r.status) && !flags.bundle_all) continue;
    std::string path;
    if (r.bundle.status().size() > 0) {
      auto written = (*auditor)->WriteBundle(
          r.bundle, absl::StrCat(absl::AsciiStrToLower(r.status), "-", r.origin, "-",
                                 r.destination, "-", r.seq, r.notice_id.empty() ? "" : "-",
                                 r.notice_id));
      path = written.ok() ? *written : std::string(written.status().message());
    }
    if (caseway::client::audit::IsProblem(r.status)) ++problems;
    lines.push_back(absl::StrFormat("  %-17s %s->%s seq %-6llu %-26s %s\n      bundle: %s",
                                    r.status, r.origin, r.destination,
                                    static_cast<unsigned long long>(r.seq), r.notice_id, r.detail,
                                    path));
  }
  if (!lines.empty()) {
    printf("\n%s:\n", flags.bundle_all ? "Exchanges" : "Findings");
    for (const auto& l : lines) printf("%s\n", l.c_str());
  }
  if (!findings.empty()) {
    printf("\nLog findings:\n");
    problems += ReportFindings(**auditor, findings);
  }
  printf("\n%s\n", problems == 0 ? "OK: every exchange matched (PENDING ones are within --grace)"
                                  : absl::StrCat(problems, " finding(s)").c_str());
  return problems == 0 ? 0 : 1;
}

// RunAuditEvidence fetches one notice's evidence from a node and checks it against the directory:
// each manifest signed by the channel's origin and holding the notice's digest at its sequence,
// each receipt signed by the destination and naming a manifest shown.
int RunAuditEvidence(const AuditFlags& flags, const std::string& node, const std::string& notice_id,
                     const std::string& origin, bool json) {
  auto dir = caseway::common::Directory::Load(flags.directory);
  auto creds = caseway::common::ChannelCredentials({flags.ca, flags.cert, flags.key});
  if (!dir.ok() || !creds.ok()) {
    fprintf(stderr, "caseway audit evidence: %s\n",
            std::string((!dir.ok() ? dir.status() : creds.status()).message()).c_str());
    return 2;
  }
  auto stub = caseway::v1::ExchangeLog::NewStub(grpc::CreateChannel(node, *creds));
  caseway::v1::GetNoticeEvidenceRequest req;
  req.set_notice_id(notice_id);
  req.set_origin(origin);
  caseway::v1::NoticeEvidence ev;
  grpc::ClientContext ctx;
  grpc::Status s = stub->GetNoticeEvidence(&ctx, req, &ev);
  if (!s.ok()) {
    fprintf(stderr, "caseway audit evidence: %s: %s\n",
            absl::StatusCodeToString(static_cast<absl::StatusCode>(s.error_code())).c_str(),
            s.error_message().c_str());
    return s.error_code() == grpc::StatusCode::NOT_FOUND ? 1 : 2;
  }
  if (json) printf("%s\n", ToJson(ev).c_str());
  const std::string digest = caseway::common::Sha256(ev.notice());
  printf("notice %s: %zu bytes, sha256 %s\n", notice_id.c_str(), ev.notice().size(),
         caseway::common::ToHex(digest).c_str());
  int bad = 0;
  for (const auto& ch : ev.channels()) {
    printf("  channel %s -> %s, seq %llu\n", ch.origin().c_str(), ch.destination().c_str(),
           static_cast<unsigned long long>(ch.seq()));
    std::set<std::string> manifests;
    bool has_manifest = false, has_receipt = false;
    for (const auto& e : ch.evidence()) {
      const auto& sig = e.signed_();
      const bool is_manifest = e.kind() == caseway::v1::Evidence::KIND_MANIFEST_SENT ||
                               e.kind() == caseway::v1::Evidence::KIND_MANIFEST_RECEIVED;
      if (is_manifest) {
        caseway::v1::BatchManifest m;
        auto key = dir->Key(ch.origin());
        bool ok = key.ok() && m.ParseFromString(sig.message()) && m.origin() == ch.origin() &&
                  m.destination() == ch.destination() && ch.seq() >= m.first_seq() &&
                  ch.seq() <= m.last_seq() &&
                  m.digests_size() == static_cast<int>(m.last_seq() - m.first_seq() + 1) &&
                  m.digests(static_cast<int>(ch.seq() - m.first_seq())) == digest &&
                  caseway::common::VerifySignature(*key, caseway::common::kManifestContext,
                                                   sig.message(), sig.signature()).ok();
        if (ok) manifests.insert(caseway::common::Sha256(sig.message()));
        has_manifest |= ok;
        bad += !ok;
        printf("    %s manifest %llu..%llu (log entry %llu): %s\n", ok ? "ok " : "BAD",
               static_cast<unsigned long long>(m.first_seq()),
               static_cast<unsigned long long>(m.last_seq()),
               static_cast<unsigned long long>(e.log_index()),
               ok ? absl::StrCat("signed by ", ch.origin(), ", holds this notice's digest").c_str()
                  : "signature, channel or digest does not match");
      }
    }
    for (const auto& e : ch.evidence()) {
      const auto& sig = e.signed_();
      if (e.kind() != caseway::v1::Evidence::KIND_RECEIPT_SENT &&
          e.kind() != caseway::v1::Evidence::KIND_RECEIPT_RECEIVED) {
        continue;
      }
      caseway::v1::Receipt r;
      auto key = dir->Key(ch.destination());
      bool ok = key.ok() && r.ParseFromString(sig.message()) && r.receiver() == ch.destination() &&
                r.origin() == ch.origin() && manifests.count(r.manifest_digest()) &&
                caseway::common::VerifySignature(*key, caseway::common::kReceiptContext,
                                                 sig.message(), sig.signature()).ok();
      has_receipt |= ok;
      bad += !ok;
      printf("    %s receipt %llu..%llu: %s\n", ok ? "ok " : "BAD",
             static_cast<unsigned long long>(r.first_seq()),
             static_cast<unsigned long long>(r.last_seq()),
             ok ? absl::StrCat("signed by ", ch.destination(), " for a manifest above, its entry ",
                               r.log_index()).c_str()
                : "signature, channel or manifest does not match");
    }
    if (!has_manifest) printf("    (no manifest yet: not sent)\n");
    else if (!has_receipt) printf("    (no receipt yet)\n");
  }
  printf("%s\n", bad == 0 ? "OK: every signature and digest verifies" : "FAILED");
  return bad == 0 ? 0 : 1;
}

int RunAuditVerifyBundle(const AuditFlags& flags, const std::string& file) {
  auto dir = caseway::common::Directory::Load(flags.directory);
  if (!dir.ok()) {
    fprintf(stderr, "caseway audit verify-bundle: %s\n", std::string(dir.status().message()).c_str());
    return 2;
  }
  auto text = caseway::common::ReadFile(file);
  if (!text.ok()) {
    fprintf(stderr, "caseway audit verify-bundle: %s\n", std::string(text.status().message()).c_str());
    return 2;
  }
  caseway::v1::EvidenceBundle bundle;
  if (!google::protobuf::util::JsonStringToMessage(*text, &bundle).ok()) {
    fprintf(stderr, "caseway audit verify-bundle: %s: not a caseway.v1.EvidenceBundle\n", file.c_str());
    return 2;
  }
  printf("bundle %s: %s\n  %s\n", file.c_str(), bundle.status().c_str(), bundle.detail().c_str());
  auto lines = caseway::client::audit::VerifyBundle(bundle, *dir);
  if (!lines.ok()) {
    printf("FAILED: %s\n", std::string(lines.status().message()).c_str());
    return 1;
  }
  for (const auto& l : *lines) printf("  %s\n", l.c_str());
  printf("OK: the bundle supports its claim\n");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
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
      "Publish notices: protobuf JSON, one caseway.v1.Notice per line, from FILE or stdin.\n"
      "Prints one JSON result line per notice; exit 0 when all succeeded, 1 when any failed.");
  publish->add_option("file", file, "JSON-lines file, or - for stdin")->capture_default_str();
  publish->add_option("--batch", batch, "notices per PublishBatch request (1 = unary Publish)")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  publish->add_option("--jobs,-j", jobs, "batches in flight at once (output stays in input order)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  publish->add_flag("--progress", progress, "show a running count on stderr");
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

  bool json = false;
  CLI::App* status = app.add_subcommand(
      "status", "Show channels (heads, acked), subscriptions (cursors, peer heads, lag) and inbox.");
  status->add_flag("--json", json, "print caseway.v1.StatusResponse as JSON");
  AddConnectionFlags(status, &conn);

  CLI::App* audit = app.add_subcommand(
      "audit", "Coordinator tools: verify a node's exchange log, reconcile two nodes, check a "
               "bundle. Needs an auditor certificate and the federation directory.");
  audit->require_subcommand(1);
  AuditFlags audit_flags;
  std::string node_a, node_b, bundle_file;
  CLI::App* audit_verify = audit->add_subcommand(
      "verify", "Verify NODE's log: checkpoint signature, consistency with the last audit (saved "
                "in --state-dir), root rebuilt from every entry. Exit 1 on FORK or LOG_CORRUPT.");
  audit_verify->add_option("node", node_a, "node address host:port")->required();
  AddAuditFlags(audit_verify, &audit_flags, true);
  CLI::App* audit_reconcile = audit->add_subcommand(
      "reconcile", "Verify two nodes, then classify every exchange between them in both "
                   "directions; print counts and findings and write evidence bundles. Exit 1 on "
                   "any finding.");
  audit_reconcile->add_option("node_a", node_a, "first node host:port")->required();
  audit_reconcile->add_option("node_b", node_b, "second node host:port")->required();
  audit_reconcile->add_option("--grace", audit_flags.grace,
                              "exchanges younger than this are PENDING, not UNDELIVERED")
      ->capture_default_str();
  audit_reconcile->add_flag("--bundle-all", audit_flags.bundle_all,
                            "write a bundle for every exchange, not only findings");
  AddAuditFlags(audit_reconcile, &audit_flags, true);
  std::string evidence_origin;
  bool evidence_json = false;
  CLI::App* audit_evidence = audit->add_subcommand(
      "evidence", "Show and check one notice's evidence at NODE: its bytes' digest, the signed "
                  "manifests that hold it and the receipts for them.");
  audit_evidence->add_option("node", node_a, "node address host:port")->required();
  audit_evidence->add_option("notice_id", bundle_file, "the notice")->required();
  audit_evidence->add_option("--origin", evidence_origin,
                             "for a received notice: the origin that sent it");
  audit_evidence->add_flag("--json", evidence_json, "also print caseway.v1.NoticeEvidence as JSON");
  AddAuditFlags(audit_evidence, &audit_flags, true);
  CLI::App* audit_bundle = audit->add_subcommand(
      "verify-bundle", "Check an evidence bundle offline: signatures, inclusion proofs and the "
                       "facts its status claims. No node needed.");
  audit_bundle->add_option("file", bundle_file, "bundle JSON file")->required();
  AddAuditFlags(audit_bundle, &audit_flags, false);

  CLI11_PARSE(app, argc, argv);
  if (audit_verify->parsed()) return RunAuditVerify(audit_flags, node_a);
  if (audit_reconcile->parsed()) return RunAuditReconcile(audit_flags, node_a, node_b);
  if (audit_bundle->parsed()) return RunAuditVerifyBundle(audit_flags, bundle_file);
  if (audit_evidence->parsed()) {
    return RunAuditEvidence(audit_flags, node_a, bundle_file, evidence_origin, evidence_json);
  }
  if (publish->parsed()) return RunPublish(conn, file, batch, jobs, progress);
  if (inbox->parsed()) return RunInbox(conn, follow, ack, window, limit);
  if (status->parsed()) return RunStatus(conn, json);
  return 2;
}
