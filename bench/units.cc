// caseway-bench-units: the unit costs a notice is made of, measured one at a time on this
// machine, in one process and on one thread, with nothing else of Caseway running: serializing,
// parsing and validating the benchmark's 1 KiB notice, SHA-256 of it, an Ed25519 signature and
// its verification, AES-128-GCM of 1 KiB (the cipher of a TLS record), a SQLite row insert and a
// commit with fsync (WAL, synchronous=FULL, as the node runs it), and the store's whole publish
// of a notice (NoticeStore::Publish, every row with the exchange log on, groups of --batch). They
// are the floor under each of #14's targets: what the guarantees cost before gRPC, HTTP/2, the
// sockets and the hand-offs between threads (bench/README.md). Bounded by --count.
#include <CLI/CLI.hpp>
#include <google/protobuf/util/time_util.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/fanout.h"
#include "common/clock.h"
#include "common/digest.h"
#include "common/notice_facts.h"
#include "common/policy.h"
#include "common/proto_bytes.h"
#include "common/signing.h"
#include "common/validation.h"
#include "server/store/notice_store.h"
#include "server/store/sqlite.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace v1 = caseway::v1;
namespace common = caseway::common;
namespace server = caseway::server;

double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct Cost {
  double wall_us = 0;  // per operation, median of the rounds
  double cpu_us = 0;   // process CPU (every thread) per operation, same round
};

// Measure runs `op` `count` times per round, five rounds, and keeps the round of median wall time.
Cost Measure(uint64_t count, const std::function<void(uint64_t)>& op) {
  std::vector<Cost> rounds;
  uint64_t i = 0;
  for (int r = 0; r < 5; ++r) {
    const double cpu0 = CpuSeconds();
    const auto t0 = Clock::now();
    for (uint64_t k = 0; k < count; ++k) op(i++);
    const double wall = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
    rounds.push_back({wall / count, (CpuSeconds() - cpu0) * 1e6 / count});
  }
  std::sort(rounds.begin(), rounds.end(),
            [](const Cost& a, const Cost& b) { return a.wall_us < b.wall_us; });
  return rounds[rounds.size() / 2];
}

void Print(const std::string& name, const std::string& per, Cost c) {
  printf("%-34s %-22s %10.2f %10.2f\n", name.c_str(), per.c_str(), c.wall_us, c.cpu_us);
  printf("JSON {\"bench\":\"unit\",\"name\":\"%s\",\"per\":\"%s\",\"wall_us\":%.3f,\"cpu_us\":%.3f}\n",
         name.c_str(), per.c_str(), c.wall_us, c.cpu_us);
}

void Die(const std::string& what) {
  fprintf(stderr, "caseway-bench-units: %s\n", what.c_str());
  exit(1);
}

void Sql(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    Die(absl::StrCat("sqlite: ", sql, ": ", err ? err : "?"));
  }
}

}  // namespace

int main(int argc, char** argv) {
  server::ConfigureSqlite();  // as the node has it: this program opens SQLite itself first
  CLI::App app{"caseway-bench-units: the unit costs of a notice on this machine, one at a time "
               "(bench/README.md)"};
  uint64_t count = 20000;
  int batch = 100;
  app.add_option("--count", count, "operations per round (five rounds, median kept)")
      ->capture_default_str()->check(CLI::Range(100, 10000000));
  app.add_option("--batch", batch, "notices per store publish and rows per SQLite transaction")
      ->capture_default_str()->check(CLI::Range(1, 10000));
  CLI11_PARSE(app, argc, argv);

  const std::string dir = std::filesystem::temp_directory_path() /
                          absl::StrCat("caseway-bench-units-", getpid());
  std::filesystem::create_directories(dir);

  // The notice of the throughput benchmark: a verification request of about 1 KiB.
  const v1::Notice notice = caseway::bench::SizedNotice("shape", "360102", "440305", 1024);
  const std::string bytes = common::DeterministicBytes(notice);
  printf("unit costs on one thread; the notice: %zu bytes serialized; rounds of %llu\n",
         bytes.size(), static_cast<unsigned long long>(count));
  printf("%-34s %-22s %10s %10s\n", "what", "per", "wall us", "cpu us");

  Print("notice: deterministic serialize", "notice", Measure(count, [&](uint64_t) {
          std::string b = common::DeterministicBytes(notice);
          if (b.size() != bytes.size()) Die("serialize");
        }));
  Print("notice: parse", "notice", Measure(count, [&](uint64_t) {
          v1::Notice n;
          if (!n.ParseFromString(bytes)) Die("parse");
        }));
  common::NoticeRules rules;
  rules.self_jurisdiction = "360102";
  rules.peers = {"440305"};
  rules.now = common::Now();
  Print("notice: validate every field", "notice", Measure(count, [&](uint64_t) {
          if (!common::ValidateNotice(notice, rules, "notice.").ok()) Die("validate");
        }));
  Print("SHA-256", "1 KiB", Measure(count, [&](uint64_t) {
          if (common::Sha256(bytes).size() != 32) Die("sha");
        }));

  const auto key = common::SigningKey::Generate();
  const std::string manifest(200, 'm');  // a manifest of one entry is about this size
  const std::string signature = key->Sign(common::kManifestContext, manifest);
  Print("Ed25519 sign", "signature", Measure(count / 10, [&](uint64_t) {
          if (key->Sign(common::kManifestContext, manifest).size() != 64) Die("sign");
        }));
  Print("Ed25519 verify", "signature", Measure(count / 10, [&](uint64_t) {
          if (!common::VerifySignature(key->PublicKey(), common::kManifestContext, manifest,
                                       signature).ok()) {
            Die("verify");
          }
        }));
  {
    std::unique_ptr<EVP_CIPHER_CTX, void (*)(EVP_CIPHER_CTX*)> ctx(EVP_CIPHER_CTX_new(),
                                                                   EVP_CIPHER_CTX_free);
    const unsigned char k[16] = {1}, iv[12] = {2};
    std::string out(bytes.size() + 16, '\0');
    Print("AES-128-GCM (a TLS record's cipher)", "1 KiB", Measure(count, [&](uint64_t) {
            int len = 0;
            unsigned char tag[16];
            auto* o = reinterpret_cast<unsigned char*>(out.data());
            if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_128_gcm(), nullptr, k, iv) != 1 ||
                EVP_EncryptUpdate(ctx.get(), o, &len, reinterpret_cast<const unsigned char*>(bytes.data()),
                                  static_cast<int>(bytes.size())) != 1 ||
                EVP_EncryptFinal_ex(ctx.get(), o + len, &len) != 1 ||
                EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, 16, tag) != 1) {
              Die("aes");
            }
          }));
  }

  // SQLite as the node opens it: WAL, synchronous=FULL. A channel entry's shape (a WITHOUT ROWID
  // table keyed by destination and sequence) and a notice row's (1 KiB blob, unique text key).
  {
    sqlite3* db = nullptr;
    if (sqlite3_open((dir + "/units.db").c_str(), &db) != SQLITE_OK) Die("open");
    Sql(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA cache_size=-65536;"
            "CREATE TABLE entry(destination TEXT NOT NULL, seq INTEGER NOT NULL, notice_id TEXT "
            "NOT NULL, PRIMARY KEY(destination, seq)) WITHOUT ROWID;"
            "CREATE TABLE body(notice_id TEXT PRIMARY KEY, digest BLOB NOT NULL, bytes BLOB NOT NULL);");
    sqlite3_stmt* entry = nullptr;
    sqlite3_stmt* body = nullptr;
    sqlite3_prepare_v2(db, "INSERT INTO entry VALUES('440305', ?, ?)", -1, &entry, nullptr);
    sqlite3_prepare_v2(db, "INSERT INTO body VALUES(?, ?, ?)", -1, &body, nullptr);
    const std::string digest = common::Sha256(bytes);
    auto in_transactions = [&](sqlite3_stmt* s, bool blob) {
      return [&, s, blob](uint64_t i) {
        if (i % batch == 0) Sql(db, "BEGIN");
        const std::string id = absl::StrCat("units-", i);
        sqlite3_reset(s);
        if (blob) {
          sqlite3_bind_text(s, 1, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
          sqlite3_bind_blob(s, 2, digest.data(), 32, SQLITE_TRANSIENT);
          sqlite3_bind_blob(s, 3, bytes.data(), static_cast<int>(bytes.size()), SQLITE_TRANSIENT);
        } else {
          sqlite3_bind_int64(s, 1, static_cast<int64_t>(i));
          sqlite3_bind_text(s, 2, id.data(), static_cast<int>(id.size()), SQLITE_TRANSIENT);
        }
        if (sqlite3_step(s) != SQLITE_DONE) Die(sqlite3_errmsg(db));
        if (i % batch == static_cast<uint64_t>(batch - 1)) Sql(db, "COMMIT");
      };
    };
    // A count that is not a multiple of --batch leaves the last transaction open: commit it.
    auto finish = [&](Cost c) {
      if (sqlite3_get_autocommit(db) == 0) Sql(db, "COMMIT");
      return c;
    };
    Print("SQLite row, small, with its commit", absl::StrCat("row, ", batch, " a commit"),
          finish(Measure(count, in_transactions(entry, false))));
    Print("SQLite row, 1 KiB blob, with commit", absl::StrCat("row, ", batch, " a commit"),
          finish(Measure(count, in_transactions(body, true))));
    Print("SQLite commit alone (fsync)", "commit", Measure(std::max<uint64_t>(count / 100, 50), [&](uint64_t i) {
            Sql(db, "BEGIN");
            sqlite3_reset(entry);
            sqlite3_bind_int64(entry, 1, static_cast<int64_t>(10000000000 + i));
            sqlite3_bind_text(entry, 2, "c", 1, SQLITE_STATIC);
            if (sqlite3_step(entry) != SQLITE_DONE) Die(sqlite3_errmsg(db));
            Sql(db, "COMMIT");
          }));
    sqlite3_finalize(entry);
    sqlite3_finalize(body);
    sqlite3_close(db);
  }

  // The store's publish, as the gateway hands it the notice: reply_due completed by the policy,
  // its facts, the request digest; every row the node writes per notice, the exchange log on.
  {
    server::StoreOptions options;
    options.path = dir + "/node.db";
    options.self = "360102";
    auto opened = server::NoticeStore::Open(options);
    if (!opened.ok()) Die(opened.status().ToString());
    server::NoticeStore& store = **opened;
    const common::Policy& policy = common::Policy::Default();
    std::vector<server::PreparedNotice> group;
    Print("store: prepare and publish, log on", absl::StrCat("notice, ", batch, " a commit"),
          Measure(count, [&](uint64_t i) {
            v1::Notice n = notice;
            n.set_notice_id(absl::StrCat("units-", i));
            server::PreparedNotice& p = group.emplace_back();
            p.notice_id = n.notice_id();
            p.destinations = {"440305"};
            p.request_digest = common::Sha256(common::DeterministicBytes(n));
            if (auto due = policy.ReplyDue(n, rules.now)) {
              *n.mutable_reply_due() = google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
                  absl::ToUnixMicros(*due));
            }
            p.facts = common::FactsOf(n);
            p.bytes = common::DeterministicBytes(n);
            p.digest = common::Sha256(p.bytes);
            if (group.size() == static_cast<size_t>(batch)) {
              auto r = store.Publish(group);
              if (!r.ok()) Die(r.status().ToString());
              group.clear();
            }
          }));
  }
  std::filesystem::remove_all(dir);
  return 0;
}
