// Fan-out benchmark: one node (the hub) serving thousands of subscription streams, each a
// distinct node identity with its own certificate, signing key and channel.
//
//   fanout-pki  makes the identities: for each of COUNT region codes a P-256 TLS key and a
//               certificate for spiffe://F/node/J signed by the federation CA, and an Ed25519
//               signing key; writes the federation directory (the base one plus these keys) and a
//               `peers:` block listing them as serve_only peers for the hub's configuration.
//   fanout      opens one real mutual-TLS Subscribe stream per identity (one process, one gRPC
//               channel and connection each, callback API), then publishes K notices per channel
//               at the hub, and measures until every stream has received and receipted its K.
//
// The simulated subscribers check that each batch continues their channel, and sign a receipt
// for its manifest digest; they store nothing and do not verify the manifest signature, so the
// figures are the hub's cost (each real subscriber would spend its own machine on that).
#include "bench/fanout.h"

#include <grpcpp/grpcpp.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "caseway/v1/gateway.grpc.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/config.h"
#include "common/digest.h"
#include "common/directory.h"
#include "common/proto_bytes.h"
#include "common/signing.h"
#include "common/tls.h"
#include "common/validation.h"

namespace caseway::bench {
namespace {

namespace v1 = caseway::v1;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "caseway-bench: %s\n", what.c_str());
  exit(2);
}

std::string ReadAll(const std::string& path) {
  auto data = common::ReadFile(path);
  if (!data.ok()) Die(data.status().ToString());
  return *std::move(data);
}

void WriteAll(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << data;
  if (!f) Die(path + ": cannot write");
}

std::string PemOf(EVP_PKEY* key) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n);
  BIO_free(bio);
  return out;
}

std::string PemOf(X509* cert) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n);
  BIO_free(bio);
  return out;
}

void AddExt(X509* cert, X509V3_CTX* ctx, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, ctx, nid, value.c_str());
  if (ext == nullptr) Die(absl::StrCat("extension ", OBJ_nid2sn(nid), "=", value));
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// Jurisdictions returns `count` distinct region codes not in `taken`: the real county codes of
// regions.csv first, then 12-digit codes under them.
std::vector<std::string> Jurisdictions(const std::string& regions_csv,
                                       const std::set<std::string>& taken, int count) {
  std::vector<std::string> counties;
  std::istringstream lines(ReadAll(regions_csv));
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    std::string code = line.substr(0, line.find(','));
    if (code.size() == 6 && taken.count(code) == 0) counties.push_back(code);
  }
  if (counties.empty()) Die(regions_csv + ": no region codes");
  std::vector<std::string> out;
  for (int i = 0; static_cast<int>(out.size()) < count; ++i) {
    const std::string& county = counties[i % counties.size()];
    const int round = i / static_cast<int>(counties.size());
    out.push_back(round == 0 ? county : absl::StrFormat("%s%06d", county, round));
  }
  return out;
}

}  // namespace

int FanoutPki(const FanoutPkiOptions& o) {
  std::filesystem::create_directories(o.out_dir);
  const std::string ca_key_pem = ReadAll(o.ca_key), ca_cert_pem = ReadAll(o.ca_cert);
  BIO* bio = BIO_new_mem_buf(ca_key_pem.data(), static_cast<int>(ca_key_pem.size()));
  EVP_PKEY* ca_key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  bio = BIO_new_mem_buf(ca_cert_pem.data(), static_cast<int>(ca_cert_pem.size()));
  X509* ca = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (ca_key == nullptr || ca == nullptr) Die("cannot read the CA certificate or key");

  const auto start = Clock::now();
  std::string directory = ReadAll(o.base_directory);
  if (!directory.empty() && directory.back() != '\n') directory += '\n';
  std::string peers = "peers:\n";
  std::string list;
  // Nodes the base directory lists already (the hub among them) are not made again.
  auto base = common::Directory::Load(o.base_directory);
  if (!base.ok()) Die(base.status().ToString());
  std::set<std::string> taken = {o.hub};
  for (const auto& [j, key] : base->keys()) taken.insert(j);
  for (const std::string& j : Jurisdictions(o.regions_csv, taken, o.count)) {
    EVP_PKEY* tls_key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    uint64_t serial = 0;
    for (char c : j) serial = serial * 10 + (c - '0');
    ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), serial + 1'000'000'000'000);
    X509_set_issuer_name(cert, X509_get_subject_name(ca));
    X509_NAME* name = X509_NAME_new();
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>("Caseway"), -1, -1, 0);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(j.c_str()), -1, -1, 0);
    X509_set_subject_name(cert, name);
    X509_NAME_free(name);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 7L * 24 * 3600);
    X509_set_pubkey(cert, tls_key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, ca, cert, nullptr, nullptr, 0);
    AddExt(cert, &ctx, NID_basic_constraints, "critical,CA:FALSE");
    AddExt(cert, &ctx, NID_key_usage, "critical,digitalSignature");
    AddExt(cert, &ctx, NID_ext_key_usage, "serverAuth,clientAuth");
    AddExt(cert, &ctx, NID_subject_alt_name,
           absl::StrCat("URI:spiffe://", o.federation, "/node/", j, ",DNS:localhost"));
    if (X509_sign(cert, ca_key, EVP_sha256()) == 0) Die("cannot sign a certificate");
    const std::string base = absl::StrCat(o.out_dir, "/", j);
    WriteAll(base + ".crt", PemOf(cert));
    WriteAll(base + ".key", PemOf(tls_key));
    X509_free(cert);
    EVP_PKEY_free(tls_key);

    EVP_PKEY* sign_key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    unsigned char raw[32];
    size_t raw_len = sizeof raw;
    EVP_PKEY_get_raw_public_key(sign_key, raw, &raw_len);
    WriteAll(base + ".sign.key", PemOf(sign_key));
    EVP_PKEY_free(sign_key);

    absl::StrAppend(&directory, "  - jurisdiction: \"", j, "\"\n    signing_key: ",
                    absl::Base64Escape(std::string(reinterpret_cast<char*>(raw), raw_len)), "\n");
    absl::StrAppend(&peers, "  - {jurisdiction: \"", j, "\", serve_only: true}\n");
    absl::StrAppend(&list, j, "\n");
  }
  WriteAll(o.out_dir + "/directory.yaml", directory);
  WriteAll(o.out_dir + "/peers.yaml", peers);
  WriteAll(o.out_dir + "/jurisdictions.txt", list);
  EVP_PKEY_free(ca_key);
  X509_free(ca);
  fprintf(stderr, "fanout-pki: %d identities in %.1f s\n", o.count,
          std::chrono::duration<double>(Clock::now() - start).count());
  return 0;
}

namespace {

struct ProcMemory {
  double rss_mib = 0, hwm_mib = 0;
};
ProcMemory Memory(int pid) {
  ProcMemory m;
  std::ifstream f(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(f, line)) {
    long kb = 0;
    if (sscanf(line.c_str(), "VmRSS: %ld kB", &kb) == 1) m.rss_mib = kb / 1024.0;
    if (sscanf(line.c_str(), "VmHWM: %ld kB", &kb) == 1) m.hwm_mib = kb / 1024.0;
  }
  return m;
}

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// SendTimes holds, for each published notice (by its index in the run), when the PublishBatch
// that carries it was sent: nanoseconds of the steady clock, 0 until then.
using SendTimes = std::vector<std::atomic<int64_t>>;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

// NoticeIndex reads the run's index of a notice from its serialized bytes without parsing them:
// notice_id (field 1, "<run>-<index>") is the first field of a deterministic serialization.
// Returns -1 for bytes that do not start so.
int64_t NoticeIndex(const std::string& notice) {
  if (notice.size() < 2 || static_cast<uint8_t>(notice[0]) != 0x0a) return -1;
  const size_t len = static_cast<uint8_t>(notice[1]);
  if (len >= 0x80 || notice.size() < 2 + len) return -1;  // ids here are under 128 bytes
  const size_t dash = notice.rfind('-', 1 + len);
  if (dash == std::string::npos || dash < 2) return -1;
  int64_t index = 0;
  for (size_t i = dash + 1; i < 2 + len; ++i) {
    if (notice[i] < '0' || notice[i] > '9') return -1;
    index = index * 10 + (notice[i] - '0');
  }
  return index;
}

// Stream is one simulated subscriber: a Subscribe stream on its own channel.
class Stream final : public grpc::ClientBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse> {
 public:
  Stream(std::string self, std::string hub, std::shared_ptr<const common::SigningKey> key,
         uint64_t expect, Clock::time_point* delivery_start, const SendTimes* sent)
      : self_(std::move(self)),
        hub_(std::move(hub)),
        key_(std::move(key)),
        expect_(expect),
        delivery_start_(delivery_start),
        sent_(sent) {}

  void Start(v1::PeerExchange::Stub* stub) {
    stub->async()->Subscribe(&ctx_, this);
    v1::SubscribeRequest open;
    open.mutable_open()->set_destination(self_);
    open.mutable_open()->set_cursor(0);
    Send(std::move(open));
    StartRead(&in_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows with the status
    if (in_.has_heartbeat()) {
      opened_ = true;
    } else if (in_.has_batch()) {
      opened_ = true;
      const v1::Batch& b = in_.batch();
      const uint64_t n = b.entries_size();
      if (b.first_seq() != received_ + 1 || n == 0) {
        fprintf(stderr, "%s: batch %lu.. does not continue at %lu\n", self_.c_str(),
                static_cast<unsigned long>(b.first_seq()),
                static_cast<unsigned long>(received_ + 1));
        broken_ = true;
        ctx_.TryCancel();
        return;
      }
      received_ += n;
      ++batches_;
      // Each notice's time from its PublishBatch being sent to its arrival here.
      const int64_t now = NowNs();
      for (const auto& e : b.entries()) {
        const int64_t i = NoticeIndex(e.notice());
        if (i < 0 || static_cast<size_t>(i) >= sent_->size()) continue;
        const int64_t at = (*sent_)[i].load(std::memory_order_relaxed);
        if (at > 0) delivery_ms_.push_back(static_cast<float>((now - at) / 1e6));
      }
      if (received_ >= expect_ && done_at_ == 0) done_at_ = Since(*delivery_start_);
      v1::Receipt r;
      r.set_receiver(self_);
      r.set_origin(hub_);
      r.set_manifest_digest(common::Sha256(b.manifest().message()));
      r.set_first_seq(b.first_seq());
      r.set_last_seq(b.first_seq() + n - 1);
      v1::SubscribeRequest ack;
      ack.mutable_ack()->set_seq(r.last_seq());
      v1::Signed* s = ack.mutable_ack()->mutable_receipt();
      s->set_message(common::DeterministicBytes(r));
      s->set_signature(key_->Sign(common::kReceiptContext, s->message()));
      s->set_signer(self_);
      Send(std::move(ack));
    }
    StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok || queue_.empty()) return;
    out_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&out_);
  }

  void OnDone(const grpc::Status& s) override {
    std::lock_guard<std::mutex> lock(mu_);
    status_ = s;
    finished_ = true;
    cv_.notify_all();
  }

  void Cancel() { ctx_.TryCancel(); }
  void AwaitDone() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return finished_; });
  }

  bool opened() const { return opened_; }
  uint64_t received() const { return received_; }
  uint64_t batches() const { return batches_; }
  double done_at() const { return done_at_; }
  bool broken() const { return broken_; }
  // Per notice received, ms from its publish to its arrival; read once the stream is done.
  const std::vector<float>& delivery_ms() const { return delivery_ms_; }
  grpc::Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }

 private:
  void Send(v1::SubscribeRequest msg) {
    std::lock_guard<std::mutex> lock(mu_);
    if (writing_) {
      queue_.push_back(std::move(msg));
      return;
    }
    out_ = std::move(msg);
    writing_ = true;
    StartWrite(&out_);
  }

  const std::string self_, hub_;
  const std::shared_ptr<const common::SigningKey> key_;
  const uint64_t expect_;
  Clock::time_point* const delivery_start_;
  const SendTimes* const sent_;
  std::vector<float> delivery_ms_;  // written by the reactor's reads, one at a time
  grpc::ClientContext ctx_;
  v1::SubscribeResponse in_;
  std::atomic<bool> opened_{false}, broken_{false};
  std::atomic<uint64_t> received_{0}, batches_{0};
  std::atomic<double> done_at_{0};
  std::mutex mu_;
  std::condition_variable cv_;
  v1::SubscribeRequest out_;
  std::deque<v1::SubscribeRequest> queue_;
  bool writing_ = false, finished_ = false;
  grpc::Status status_;
};

}  // namespace

// Notice1K builds a valid verification request whose serialized size is about 1 KiB.
v1::Notice Notice1K(const std::string& id, const std::string& origin, const std::string& dest) {
  v1::Notice n;
  n.set_notice_id(id);
  n.set_case_id("bench-case");
  auto* s = n.mutable_subject();
  s->set_name("测试人");
  s->set_id_number("11010519491231002X");
  s->set_sex(v1::SEX_FEMALE);
  s->mutable_birth_date()->set_year(1990);
  s->mutable_birth_date()->set_month(1);
  s->mutable_birth_date()->set_day(1);
  s->set_registered_region(origin);
  n.add_destinations(dest);
  n.mutable_occurred_at()->set_seconds(1'790'000'000);
  n.set_priority(v1::PRIORITY_NORMAL);
  auto* vr = n.mutable_verification_request();
  vr->set_request_id("bench");
  vr->add_items(std::string(120, 'a'));
  vr->add_items(std::string(120, 'b'));
  vr->add_items(std::string(120, 'c'));
  vr->set_remarks(std::string(500, 'r'));
  return n;
}

v1::Notice SizedNotice(const std::string& id, const std::string& origin, const std::string& dest,
                       size_t bytes) {
  v1::Notice n = Notice1K(id, origin, dest);
  auto* vr = n.mutable_verification_request();
  vr->clear_items();
  vr->clear_remarks();
  // Items of 128 characters, then one shorter: CJK text (3 bytes a character) past 8 KiB,
  // since the contract caps items at 64 and each at 128 characters.
  const std::string unit = bytes > 8 * 1024 ? "\xe6\xb5\x8b" : "a";  // 测 or a
  const size_t base = n.ByteSizeLong() + 8;
  size_t left = bytes > base ? bytes - base : 0;
  while (vr->items_size() < 64 && (left > 0 || vr->items_size() == 0)) {
    const size_t chars = std::max<size_t>(1, std::min<size_t>(128, left / unit.size()));
    std::string item;
    for (size_t i = 0; i < chars; ++i) item += unit;
    left -= std::min(left, item.size() + 3);
    vr->add_items(std::move(item));
  }
  return n;
}

size_t LargestNoticeBytes() {
  return SizedNotice("largest", "360102", "440305", 1 << 20).ByteSizeLong();
}

std::string BenchCase(uint64_t k) { return absl::StrCat("bench-case-", k); }

std::string BenchIdNumber(uint64_t k) {
  std::string id = absl::StrFormat("%017d", 11000000000000000ULL + k);
  id.push_back(common::IdNumberCheckCharacter(id));
  return id;
}

void SpreadCase(v1::Notice& n, uint64_t i, uint64_t cases) {
  if (cases == 0) return;
  n.set_case_id(BenchCase(i % cases));
  n.mutable_subject()->set_id_number(BenchIdNumber(i % cases));
}

std::shared_ptr<grpc::Channel> BenchChannel(const std::string& address,
                                            const common::TlsFiles& files) {
  auto creds = common::ChannelCredentials(files);
  if (!creds.ok()) Die(creds.status().ToString());
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(address, *creds, args);
}

std::unique_ptr<v1::Gateway::Stub> GatewayStub(const std::string& address,
                                               const common::TlsFiles& files) {
  return v1::Gateway::NewStub(BenchChannel(address, files));
}

namespace {

// Publish sends `per_stream` notices to each destination: batches of `batch`, each notice to one
// destination, round robin, from `clients` concurrent clients, and records in `sent` when each
// notice's request was sent. Returns the notices stored.
uint64_t Publish(const FanoutOptions& o, const std::vector<std::string>& dests,
                 const MakeNotice& make, SendTimes& sent) {
  const uint64_t total = static_cast<uint64_t>(dests.size()) * o.per_stream;
  std::atomic<uint64_t> next{0}, stored{0}, errors{0};
  const auto deadline = Clock::now() + std::chrono::seconds(o.max_s);
  const std::string run =
      absl::StrCat("fan-", std::chrono::system_clock::now().time_since_epoch().count());
  std::vector<std::thread> threads;
  for (int c = 0; c < o.clients; ++c) {
    threads.emplace_back([&] {
      auto stub = GatewayStub(o.hub_address, {o.ca, o.publisher_cert, o.publisher_key});
      while (Clock::now() < deadline) {
        const uint64_t first = next.fetch_add(o.batch);
        if (first >= total) break;
        const uint64_t n = std::min<uint64_t>(o.batch, total - first);
        v1::PublishBatchRequest req;
        for (uint64_t i = first; i < first + n; ++i) {
          *req.add_notices() = make(absl::StrCat(run, "-", i), dests[i % dests.size()]);
        }
        v1::PublishBatchResponse resp;
        grpc::ClientContext ctx;
        const int64_t now = NowNs();
        for (uint64_t i = first; i < first + n; ++i) sent[i].store(now, std::memory_order_relaxed);
        grpc::Status s = stub->PublishBatch(&ctx, req, &resp);
        if (s.ok()) {
          stored += n;
        } else if (errors++ == 0) {
          fprintf(stderr, "publish: %s\n", s.error_message().c_str());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  return stored;
}

}  // namespace

int Fanout(const FanoutOptions& o, const MakeNotice& make_notice, const PrintRow& print) {
  std::vector<std::string> dests;
  {
    std::istringstream in(ReadAll(o.pki_dir + "/jurisdictions.txt"));
    std::string j;
    while (std::getline(in, j) && static_cast<int>(dests.size()) < o.streams) {
      if (!j.empty()) dests.push_back(j);
    }
  }
  if (static_cast<int>(dests.size()) < o.streams) Die("fewer identities than --streams");
  const int n = o.streams;
  // Delivery is timed from the first publish, or with --publish-first from the first connect.
  Clock::time_point delivery_start = Clock::now() + std::chrono::hours(1);
  const auto total_deadline = Clock::now() + std::chrono::seconds(o.max_s);

  SendTimes sent(static_cast<size_t>(n) * o.per_stream);  // value-initialized: 0
  auto publish = [&] {
    const auto t0 = Clock::now();
    if (!o.publish_first) delivery_start = t0;
    const uint64_t stored = Publish(o, dests, make_notice, sent);
    return std::make_pair(stored, Since(t0));
  };
  std::pair<uint64_t, double> published{0, 0};
  if (o.publish_first) published = publish();

  // One channel (connection) and one stream per identity.
  const auto connect_start = Clock::now();
  if (o.publish_first) delivery_start = connect_start;
  // Credentials are built in parallel: each is its own SSL context (a real subscriber node has
  // one), and building 3,000 of them one after another would time the client, not the hub.
  std::vector<std::unique_ptr<v1::PeerExchange::Stub>> stubs(n);
  std::vector<std::unique_ptr<Stream>> streams(n);
  {
    std::atomic<int> next{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
      threads.emplace_back([&] {
        for (int i = next++; i < n; i = next++) {
          const std::string base = o.pki_dir + "/" + dests[i];
          auto creds = common::ChannelCredentials({o.ca, base + ".crt", base + ".key"});
          if (!creds.ok()) Die(creds.status().ToString());
          auto key = common::SigningKey::LoadPem(ReadAll(base + ".sign.key"));
          if (!key.ok()) Die(key.status().ToString());
          grpc::ChannelArguments args;
          args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
          args.SetMaxReceiveMessageSize(64 << 20);
          stubs[i] = v1::PeerExchange::NewStub(grpc::CreateCustomChannel(o.hub_address, *creds, args));
          streams[i] = std::make_unique<Stream>(dests[i], o.hub, *key, o.per_stream, &delivery_start,
                                                &sent);
          streams[i]->Start(stubs[i].get());
        }
      });
    }
    for (auto& t : threads) t.join();
  }
  auto count_open = [&] {
    int open = 0;
    for (auto& s : streams) open += s->opened() ? 1 : 0;
    return open;
  };
  while (count_open() < n && Clock::now() < total_deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  const int opened = count_open();
  const double connect_s = Since(connect_start);
  std::this_thread::sleep_for(std::chrono::seconds(2));  // settle: idle heartbeats only
  const ProcMemory idle = Memory(o.hub_pid);
  fprintf(stderr, "fanout: %d/%d streams open in %.1f s; hub RSS %.0f MiB idle\n", opened, n,
          connect_s, idle.rss_mib);

  if (!o.publish_first) published = publish();
  const uint64_t expected = static_cast<uint64_t>(n) * o.per_stream;
  auto delivered = [&] {
    uint64_t sum = 0;
    for (auto& s : streams) sum += std::min<uint64_t>(s->received(), o.per_stream);
    return sum;
  };
  double peak_rss = 0;
  while (delivered() < expected && Clock::now() < total_deadline) {
    peak_rss = std::max(peak_rss, Memory(o.hub_pid).rss_mib);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const double all_s = Since(delivery_start);
  const uint64_t got = delivered();
  // Receipts: every channel acknowledged to its head at the hub.
  auto gateway = GatewayStub(o.hub_address, {o.ca, o.publisher_cert, o.publisher_key});
  uint64_t receipted = 0;
  int fully_receipted = 0;
  for (int attempt = 0; attempt < 200 && Clock::now() < total_deadline + std::chrono::seconds(10);
       ++attempt) {
    grpc::ClientContext ctx;
    v1::StatusResponse st;
    receipted = 0;
    fully_receipted = 0;
    if (gateway->Status(&ctx, v1::StatusRequest(), &st).ok()) {
      for (const auto& c : st.channels()) {
        receipted += c.acked();
        fully_receipted += c.acked() >= o.per_stream ? 1 : 0;
      }
    }
    if (fully_receipted >= n) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  const ProcMemory end = Memory(o.hub_pid);
  peak_rss = std::max(peak_rss, end.rss_mib);

  std::vector<double> done_at;
  int complete = 0, broken = 0;
  uint64_t min_received = UINT64_MAX, batches = 0;
  for (auto& s : streams) {
    batches += s->batches();
    min_received = std::min<uint64_t>(min_received, s->received());
    if (s->received() >= o.per_stream) {
      ++complete;
      done_at.push_back(s->done_at());
    }
    broken += s->broken() ? 1 : 0;
  }
  std::sort(done_at.begin(), done_at.end());
  auto at = [&](double q) {
    return done_at.empty() ? 0.0
                           : done_at[std::min(done_at.size() - 1, static_cast<size_t>(q * done_at.size()))];
  };
  for (auto& s : streams) s->Cancel();
  for (auto& s : streams) s->AwaitDone();
  // Each notice's delivery: from its PublishBatch being sent to its arrival at its subscriber.
  // With --publish-first the streams connect after everything is published, so this includes
  // the wait for the connection; the live run is the one the target names.
  std::vector<float> delivery;
  delivery.reserve(got);
  for (auto& s : streams) {
    delivery.insert(delivery.end(), s->delivery_ms().begin(), s->delivery_ms().end());
  }
  std::sort(delivery.begin(), delivery.end());
  auto delivery_at = [&](double q) {
    return delivery.empty()
               ? 0.0
               : delivery[std::min(delivery.size() - 1, static_cast<size_t>(q * delivery.size()))];
  };

  print(absl::StrCat("fanout ", o.label),
        {{"streams", absl::StrCat(n)},
         {"opened", absl::StrCat(opened)},
         {"connect_s", absl::StrFormat("%.1f", connect_s)},
         {"per_stream", absl::StrCat(o.per_stream)},
         {"published", absl::StrCat(published.first)},
         {"publish_per_s", absl::StrFormat("%.0f", published.first / std::max(published.second, 1e-9))},
         {"delivered", absl::StrCat(got)},
         // Each batch costs the hub a signature, a receipt to verify and two log entries.
         {"notices_per_batch", absl::StrFormat("%.2f", got / std::max<double>(batches, 1))},
         {"notices_per_s", absl::StrFormat("%.0f", got / std::max(all_s, 1e-9))},
         {"receipted", absl::StrCat(receipted)},
         {"streams_complete", absl::StrCat(complete)},
         {"streams_starved", absl::StrCat(n - complete)},
         {"min_stream_received", absl::StrCat(min_received)},
         {"stream_done_p50_s", absl::StrFormat("%.2f", at(0.5))},
         {"stream_done_max_s", absl::StrFormat("%.2f", done_at.empty() ? 0.0 : done_at.back())},
         {"delivery_p50_ms", absl::StrFormat("%.1f", delivery_at(0.5))},
         {"delivery_p99_ms", absl::StrFormat("%.1f", delivery_at(0.99))},
         {"delivery_max_ms", absl::StrFormat("%.1f", delivery.empty() ? 0.0 : delivery.back())},
         {"delivery_timed", absl::StrCat(delivery.size())},
         {"hub_rss_idle_mib", absl::StrFormat("%.0f", idle.rss_mib)},
         {"hub_rss_peak_mib", absl::StrFormat("%.0f", std::max(peak_rss, end.hwm_mib))},
         {"broken", absl::StrCat(broken)}});
  return complete == n && fully_receipted >= n && broken == 0 ? 0 : 1;
}

}  // namespace caseway::bench
