// A hostile or careless party against real nodes (docs/errors.md, docs/limits.md): undecodable
// requests, oversized and out-of-range fields, echoed input, notices at the size limit, files
// with personal data, and protocol misuse on the streams. Each case names the status it expects.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "caseway/v1/exchange_log.grpc.pb.h"
#include "caseway/v1/peer_exchange.grpc.pb.h"
#include "common/config.h"
#include "common/grpc_status.h"
#include "common/refusal.h"
#include "common/signing.h"
#include "common/tls.h"
#include "tests/testing/audited_pair.h"
#include "tests/testing/harness.h"
#include "tests/testing/status_matchers.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

// Two peered nodes, 360102 (A, the one attacked) and 440305 (B), made but not started.
class HostileTest : public AuditedPairTest {
 protected:

  void StartBoth(const std::string& limits_yaml = "") {
    a_->set_extra_yaml(limits_yaml);
    b_->set_extra_yaml(limits_yaml);
    ASSERT_OK(a_->Start());
    ASSERT_OK(b_->Start());
  }

  std::shared_ptr<grpc::Channel> ChannelAs(const std::string& prefix) {
    auto creds = common::ChannelCredentials(
        common::TlsFiles{pki_->ca(), prefix + ".crt", prefix + ".key"});
    EXPECT_OK(creds);
    return grpc::CreateChannel(a_->address(), *creds);
  }

  // RawUnary calls `method` on A with `bytes` as the request, as `prefix`.
  grpc::Status RawUnary(const std::string& prefix, const std::string& method,
                        const std::string& bytes,
                        std::chrono::seconds deadline = std::chrono::seconds(10)) {
    grpc::GenericStub stub(ChannelAs(prefix));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + deadline);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1), response;
    std::promise<grpc::Status> done;
    stub.UnaryCall(&ctx, method, grpc::StubOptions(), &request, &response,
                   [&](grpc::Status s) { done.set_value(s); });
    return done.get_future().get();
  }

  // RawStreamFirst opens a bidi stream, writes `bytes` as its first message and returns how the
  // stream ends.
  grpc::Status RawStreamFirst(const std::string& prefix, const std::string& method,
                              const std::string& bytes) {
    grpc::GenericStub stub(ChannelAs(prefix));
    grpc::CompletionQueue cq;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto call = stub.PrepareCall(&ctx, method, &cq);
    void* tag;
    bool ok;
    call->StartCall(reinterpret_cast<void*>(1));
    cq.Next(&tag, &ok);
    grpc::Slice slice(bytes);
    grpc::ByteBuffer request(&slice, 1);
    call->Write(request, reinterpret_cast<void*>(2));
    cq.Next(&tag, &ok);
    grpc::ByteBuffer response;
    // Read until the stream ends (a heartbeat or nothing may come first).
    do {
      call->Read(&response, reinterpret_cast<void*>(3));
      cq.Next(&tag, &ok);
    } while (ok);
    grpc::Status status;
    call->Finish(&status, reinterpret_cast<void*>(4));
    cq.Next(&tag, &ok);
    return status;
  }

  std::string Office() { return pki_->Client(kA, "office"); }

};

// Bytes that no protobuf parser accepts: a field number 0 tag.
const std::string kGarbage("\x00\x01\x02", 3);

TEST_F(HostileTest, UndecodableRequestsAreInvalidArgumentOnEveryKindOfMethod) {
  StartBoth();
  for (const char* method : {"/caseway.v1.Gateway/Publish", "/caseway.v1.Gateway/PublishBatch",
                             "/caseway.v1.Gateway/Status"}) {
    grpc::Status s = RawUnary(Office(), method, kGarbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_THAT(s.error_message(), HasSubstr("request: not a valid")) << method;
    // With typed details, whichever path refused it (errors.md).
    const absl::Status typed = common::FromGrpcStatus(s);
    EXPECT_EQ(common::ReasonOf(typed), "INVALID_REQUEST") << method;
    ASSERT_EQ(common::ViolationsOf(typed).size(), 1u) << method;
    EXPECT_EQ(common::ViolationsOf(typed)[0].field, "request") << method;
  }
  grpc::Status s = RawUnary(pki_->Auditor("alice"), "/caseway.v1.ExchangeLog/GetCheckpoint",
                            kGarbage);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(common::ReasonOf(common::FromGrpcStatus(s)), "INVALID_REQUEST");
  // A string field that is not UTF-8 (notice.case_id = "\xff").
  v1::PublishRequest req;
  *req.mutable_notice() = SampleNotice("utf8-1", {kB});
  std::string bytes = req.SerializeAsString();
  const std::string case_id = req.notice().case_id();
  bytes.replace(bytes.find(case_id), 1, "\xff");
  s = RawUnary(Office(), "/caseway.v1.Gateway/Publish", bytes);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("not UTF-8"));
  // Streams whose first message does not parse.
  s = RawStreamFirst(Office(), "/caseway.v1.Gateway/Inbox", kGarbage);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  s = RawStreamFirst(pki_->Node(kB), "/caseway.v1.PeerExchange/Subscribe", kGarbage);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  EXPECT_EQ(a_->Published(), 0);
}

TEST_F(HostileTest, UnaryRequestsAreParsedOnlyAfterTheCallerIsAuthorized) {
  StartBoth();
  // Garbage from a caller the table refuses is PERMISSION_DENIED: INVALID_ARGUMENT would mean
  // that the node parsed the request of a caller it had not yet authorized.
  for (const char* method : {"/caseway.v1.Gateway/Status", "/caseway.v1.Gateway/Todo",
                             "/caseway.v1.Gateway/QueryPeer", "/caseway.v1.Gateway/Case",
                             "/caseway.v1.Gateway/AccessLog"}) {
    grpc::Status s = RawUnary(pki_->Node(kB), method, kGarbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << method << ": " << s.error_message();
  }
  for (const char* method :
       {"/caseway.v1.PeerExchange/Query", "/caseway.v1.PeerExchange/GetPeerView",
        "/caseway.v1.ExchangeLog/GetCheckpoint", "/caseway.v1.ExchangeLog/GetEntries",
        "/caseway.v1.ExchangeLog/GetInclusionProof", "/caseway.v1.ExchangeLog/GetConsistencyProof",
        "/caseway.v1.ExchangeLog/GetEvidence", "/caseway.v1.ExchangeLog/GetNoticeEvidence",
        "/caseway.v1.ExchangeLog/GetNotices", "/caseway.v1.ExchangeLog/AddCosignature"}) {
    grpc::Status s = RawUnary(Office(), method, kGarbage);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << method << ": " << s.error_message();
  }
  // A method that no service serves is UNIMPLEMENTED, and says which.
  grpc::Status s = RawUnary(Office(), "/caseway.v1.Gateway/Nonesuch", kGarbage);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNIMPLEMENTED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("/caseway.v1.Gateway/Nonesuch"));
}

TEST_F(HostileTest, NoCallerHoldsMoreThanItsShareOfTheRequestThreads) {
  StartBoth();
  // With B stopped, every QueryPeer that A's office sends through A waits for B: 16 are held,
  // the 17th is refused at once, and another client of A is still answered.
  ASSERT_OK(b_->Freeze());
  v1::QueryPeerRequest req;
  req.set_peer(kB);
  req.set_case_id("case-held");
  req.set_purpose(kTestPurpose);
  const std::string bytes = req.SerializeAsString();
  grpc::GenericStub stub(ChannelAs(Office()));
  constexpr int kCalls = 17;
  struct Call {
    grpc::ClientContext ctx;
    grpc::ByteBuffer request, response;
    std::promise<grpc::Status> done;
  };
  std::vector<std::unique_ptr<Call>> calls;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) {
    calls.push_back(std::make_unique<Call>());
    Call* c = calls.back().get();
    c->ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    grpc::Slice slice(bytes);
    c->request = grpc::ByteBuffer(&slice, 1);
    stub.UnaryCall(&c->ctx, "/caseway.v1.Gateway/QueryPeer", grpc::StubOptions(), &c->request,
                   &c->response, [c](grpc::Status st) { c->done.set_value(st); });
  }
  std::vector<std::future<grpc::Status>> results;
  for (auto& c : calls) results.push_back(c->done.get_future());
  // Exactly one (whichever arrived last) is refused, long before B's answers are due (10 s).
  int refused = -1;
  for (int round = 0; round < 100 && refused < 0; ++round) {
    for (int i = 0; i < kCalls; ++i) {
      if (results[i].wait_for(std::chrono::milliseconds(0)) == std::future_status::ready) {
        refused = i;
      }
    }
    if (refused < 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(refused, 0) << "no call was refused within 5 s";
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(8));
  grpc::Status first = results[refused].get();
  EXPECT_EQ(first.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << first.error_message();
  EXPECT_THAT(first.error_message(), HasSubstr("unary calls on this node (at most 16)"));
  EXPECT_EQ(common::ReasonOf(common::FromGrpcStatus(first)), "TOO_MANY_CALLS");
  // Another client of A is answered meanwhile.
  auto other = v1::Gateway::NewStub(ChannelAs(pki_->Client(kA, "other-office")));
  grpc::ClientContext status_ctx;
  status_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::StatusResponse status;
  grpc::Status st = other->Status(&status_ctx, v1::StatusRequest(), &status);
  EXPECT_TRUE(st.ok()) << st.error_message();
  ASSERT_OK(b_->Thaw());
  int exhausted = 0;
  for (int i = 0; i < kCalls; ++i) {
    if (i == refused) continue;
    grpc::Status r = results[i].get();
    // (B's own query rate limit may refuse some once it runs again: another reason.)
    if (r.error_message().find("unary calls") != std::string::npos) ++exhausted;
  }
  EXPECT_EQ(exhausted, 0) << "only the 17th call may be refused for holding too many";
}

TEST_F(HostileTest, LargeRefusedRequestsAreReadOnlyAtThePaceTheNodeRefusesThem) {
  StartBoth();
  // About 1.2 MB (over the 1 MiB "large" mark, under the 4 MiB message limit) that validation
  // refuses: 400,000 one-byte verification items.
  v1::PublishBatchRequest req;
  v1::Notice n = SampleNotice("bulky-1", {kB});
  auto* items = n.mutable_verification_request()->mutable_items();
  items->Clear();
  for (int i = 0; i < 400000; ++i) items->Add("x");
  *req.add_notices() = n;
  const std::string bytes = req.SerializeAsString();
  ASSERT_GT(bytes.size(), size_t{1} << 20);
  const std::string flooder = pki_->Client(kA, "careless");
  // The first one: refused, and the caller is now paused a second after each refusal.
  grpc::Status s = RawUnary(flooder, "/caseway.v1.Gateway/PublishBatch", bytes);
  ASSERT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  // Three more at once: each is read only after the pause that follows the previous refusal.
  // (The last waits for two pauses and three refusals of 1.2 MB each: over 10 s in the sanitizer
  // build on a busy machine, hence the longer deadline.)
  std::vector<std::future<std::chrono::steady_clock::time_point>> done;
  for (int i = 0; i < 3; ++i) {
    done.push_back(std::async(std::launch::async, [&] {
      grpc::Status st = RawUnary(flooder, "/caseway.v1.Gateway/PublishBatch", bytes,
                                 std::chrono::seconds(30));
      EXPECT_EQ(st.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << st.error_message();
      return std::chrono::steady_clock::now();
    }));
  }
  // Meanwhile another client publishes as usual.
  ASSERT_OK(a_->NewClient()->Publish(SampleNotice("meanwhile-1", {kB})));
  std::vector<std::chrono::steady_clock::time_point> at;
  for (auto& d : done) at.push_back(d.get());
  std::sort(at.begin(), at.end());
  for (size_t i = 1; i < at.size(); ++i) {
    EXPECT_GE(at[i] - at[i - 1], std::chrono::milliseconds(900))
        << "refusal " << i << " came too soon after the one before";
  }
}

TEST_F(HostileTest, ErrorMessagesQuoteOnlyABoundedPrefixOfInput) {
  StartBoth();
  v1::Notice n = SampleNotice("echo-1", {kB});
  n.set_in_reply_to("echo-0");
  auto* fb = n.mutable_feedback();
  fb->set_outcome(v1::Feedback::OUTCOME_CORRECTED);
  (*fb->mutable_values())[std::string(65536, 'k')] = "v";
  auto result = a_->NewClient()->Publish(n);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_LE(result.status().message().size(), common::kMaxStatusMessageBytes);
  EXPECT_THAT(result.status().message(), HasSubstr("(65536 bytes)"));
  EXPECT_THAT(result.status().message(), HasSubstr("at most 64 characters"));
}

TEST_F(HostileTest, EveryAcceptedNoticeIsDeliverableAndALargerOneIsRefused) {
  // max_message_bytes 64 KiB: notices of at most 24 KiB (half, less 8 KiB for the framing).
  StartBoth("limits:\n  max_message_bytes: 65536\n");
  v1::Notice n = SampleNotice("large-1", {kB});
  n.clear_residence_change();
  auto* vr = n.mutable_verification_request();
  vr->set_request_id("vr-1");
  for (int i = 0; i < 60; ++i) {
    std::string item;
    for (int c = 0; c < 128; ++c) item += "查";  // 3 bytes each
    vr->add_items(item);
  }
  // reply_due given, so that the node adds nothing. Grow the remarks until the stored notice
  // (origin set) is exactly at the limit.
  *n.mutable_reply_due() = n.occurred_at();
  n.mutable_reply_due()->set_seconds(n.occurred_at().seconds() + 30 * 86400);
  constexpr size_t kLimit = 24576;
  n.set_origin(kA);
  while (n.ByteSizeLong() + 3 < kLimit) vr->mutable_remarks()->append("查");
  while (n.ByteSizeLong() < kLimit) vr->mutable_remarks()->push_back('r');
  ASSERT_EQ(n.ByteSizeLong(), kLimit);
  n.clear_origin();
  v1::Notice over = n;
  over.set_notice_id("large-2");
  over.mutable_verification_request()->mutable_remarks()->push_back('r');
  auto client = a_->NewClient();
  EXPECT_THAT(client->Publish(over),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("at most 24576 (limits.max_notice_bytes")));
  ASSERT_OK(client->Publish(n));
  // The largest accepted notice reaches the destination's inbox.
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 1; },
                      absl::Seconds(20)))
      << a_->log();
  // And the channel keeps flowing behind it.
  ASSERT_OK(client->Publish(SampleNotice("after-1", {kB})));
  EXPECT_TRUE(WaitFor([&] { return b_->InboxTotal() == 2; },
                      absl::Seconds(20)));
  // Resending a sealed batch (a subscriber reconnecting) adds no SENT entry.
  const std::vector<v1::Evidence> sent = a_->Evidence(v1::Evidence::KIND_MANIFEST_SENT, kB);
  std::set<uint64_t> firsts;
  for (const auto& e : sent) firsts.insert(e.first_seq());
  EXPECT_EQ(sent.size(), firsts.size());
}

TEST_F(HostileTest, RepeatedFieldsAndInstantsAreBounded) {
  StartBoth();
  auto client = a_->NewClient();
  v1::Notice n = SampleNotice("items-1", {kB});
  n.clear_residence_change();
  n.mutable_verification_request()->set_request_id("r");
  for (int i = 0; i < 65; ++i) n.mutable_verification_request()->add_items("x");
  EXPECT_THAT(client->Publish(n),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notice.verification_request.items: at most 64 items")));
  n = SampleNotice("due-1", {kB});
  n.mutable_reply_due()->set_seconds(253402300799);  // 9999-12-31T23:59:59Z
  EXPECT_THAT(client->Publish(n),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notice.reply_due: must be in the years 1900..2200")));
  n = SampleNotice("due-2", {kB});
  *n.mutable_reply_due() = n.occurred_at();
  n.mutable_reply_due()->set_seconds(n.occurred_at().seconds() + 86400);
  n.mutable_reply_due()->set_nanos(-1);
  EXPECT_THAT(client->Publish(n),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("notice.reply_due.nanos: must be in 0..999999999")));
  n = SampleNotice("occ-1", {kB});
  n.mutable_occurred_at()->set_seconds(-62135596800);  // year 1
  EXPECT_THAT(client->Publish(n), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("notice.occurred_at: must be in the years")));
  EXPECT_EQ(a_->Published(), 0);
}

TEST_F(HostileTest, InboxAckOfAnUnknownSequenceIsNotFound) {
  StartBoth();
  auto stub = v1::Gateway::NewStub(ChannelAs(Office()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = stub->Inbox(&ctx);
  v1::InboxRequest start;
  start.mutable_start()->set_purpose(kTestPurpose);
  start.mutable_start()->set_ack(true);
  start.mutable_start()->set_follow(true);
  ASSERT_TRUE(stream->Write(start));
  v1::InboxRequest ack;
  ack.mutable_ack()->add_inbox_seqs(424242);
  ASSERT_TRUE(stream->Write(ack));
  v1::InboxResponse resp;
  while (stream->Read(&resp)) {
  }
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("ack.inbox_seqs: 424242 is not in the inbox"));
}

TEST_F(HostileTest, FilesWithPersonalDataAreReadableByTheNodeUserOnly) {
  if (TestStoreIsPostgres()) GTEST_SKIP() << "the SQLite files' permissions: PostgreSQL keeps its own";
  a_->set_db_path(dir_.path() + "/data/360102.db");  // a directory the node creates
  StartBoth();
  ASSERT_OK(a_->NewClient()->Publish(SampleNotice("perm-1", {kB})));
  struct stat st;
  ASSERT_EQ(stat((dir_.path() + "/data").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (const std::string suffix : {"", "-wal", "-shm"}) {
    ASSERT_EQ(stat((a_->db_path() + suffix).c_str(), &st), 0) << suffix;
    EXPECT_EQ(st.st_mode & 077, 0u) << suffix << " is readable by others";
  }
}


TEST_F(HostileTest, CliInboxNeverAcknowledgesANoticeItCannotPrintWhole) {
  StartBoth();
  auto client = a_->NewClient();
  ASSERT_OK(client->Publish(SampleNotice("print-1", {kB})));
  ASSERT_OK(client->Publish(SampleNotice("print-2", {kB})));
  ASSERT_TRUE(WaitFor([&] { return b_->InboxTotal() == 2; },
                      absl::Seconds(20)));
  // The second inbox row as an older origin could have sent it: reply_due beyond year 9999,
  // which has no JSON form.
  const std::vector<v1::InboxItem> items = b_->InboxItems();
  ASSERT_EQ(items.size(), 2u);
  ASSERT_EQ(items[1].inbox_seq(), 2u);
  v1::Notice n = items[1].notice();
  n.mutable_reply_due()->set_seconds(253402300799 + 86400);
  std::string hex;
  for (unsigned char c : n.SerializeAsString()) absl::StrAppendFormat(&hex, "%02x", c);
  b_->Exec("UPDATE inbox SET bytes = " + b_->Bytes(hex) + " WHERE inbox_seq = 2");
  std::vector<std::string> argv = {BinDir() + "/caseway", "inbox", "--ack"};
  for (auto& f : b_->CliFlags()) argv.push_back(f);
  RunResult r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_THAT(r.err, HasSubstr("inbox_seq 2: cannot be printed as protobuf JSON"));
  EXPECT_THAT(r.out, HasSubstr("print-1"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("print-2")));
  // The first was printed and acknowledged; the second was not.
  EXPECT_EQ(b_->InboxUnacked(), 1);
  const std::vector<v1::InboxItem> left = b_->InboxItems();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].inbox_seq(), 2u);
}


TEST_F(HostileTest, OnlyPeersCosignAndAWitnessIsServedItsOwnCosignatureOnly) {
  const std::string stranger = pki_->Node("360111");  // in the directory, not a peer of A
  StartBoth();
  ASSERT_OK(a_->NewClient()->Publish(SampleNotice("cosign-1", {kB})));
  ASSERT_TRUE(WaitFor([&] { return a_->CheckpointSize() > 0; },
                      absl::Seconds(20)));
  auto creds = [&](const std::string& prefix) {
    return *common::ChannelCredentials(
        common::TlsFiles{pki_->ca(), prefix + ".crt", prefix + ".key"});
  };
  auto as_stranger = v1::ExchangeLog::NewStub(grpc::CreateChannel(a_->address(), creds(stranger)));
  v1::CheckpointResponse cp;
  {
    grpc::ClientContext ctx;
    grpc::Status got = as_stranger->GetCheckpoint(&ctx, v1::GetCheckpointRequest(), &cp);
    ASSERT_TRUE(got.ok()) << got.error_code() << " " << got.error_message();
  }
  auto note = common::ParseNote(cp.note());
  ASSERT_OK(note);
  auto key_pem = common::ReadFile(stranger + ".sign.key");
  ASSERT_OK(key_pem);
  auto key = common::SigningKey::LoadPem(*key_pem);
  ASSERT_OK(key);
  v1::AddCosignatureRequest add;
  add.set_note(cp.note() + common::SignCosignatureLine(note->body, "fed.test/node/360111", **key,
                                                       absl::ToUnixSeconds(absl::Now())));
  v1::AddCosignatureResponse added;
  grpc::ClientContext ctx;
  grpc::Status s = as_stranger->AddCosignature(&ctx, add, &added);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("not a peer of this node"));
  EXPECT_EQ(a_->Cosigners("360111", cp.size()), 0);

  // B, the peer, cosigns A's checkpoints; asked for B's cosignature only, the note has A's
  // signature and B's line, nothing else.
  int64_t cosigned = 0;
  ASSERT_TRUE(WaitFor([&] {
    cosigned = a_->CheckpointSize();
    return a_->Cosigners(kB, cosigned) > 0;
  }, absl::Seconds(20)));
  auto as_auditor = v1::ExchangeLog::NewStub(
      grpc::CreateChannel(a_->address(), creds(pki_->Auditor("alice"))));
  v1::GetCheckpointRequest only_b;
  only_b.set_cosigner("fed.test/node/440305");
  only_b.set_size(cosigned);
  grpc::ClientContext ctx2;
  ASSERT_TRUE(as_auditor->GetCheckpoint(&ctx2, only_b, &cp).ok());
  note = common::ParseNote(cp.note());
  ASSERT_OK(note);
  ASSERT_EQ(note->signatures.size(), 2u) << cp.note();
  EXPECT_EQ(note->signatures[1].name, "fed.test/node/440305");
}


TEST_F(HostileTest, SubscribeStreamsAreBoundedAndAReconnectAddsNothingToTheLog) {
  ASSERT_OK(a_->Start());  // only A runs; the test plays B by hand
  auto client = a_->NewClient();
  for (int i = 0; i < 3; ++i) ASSERT_OK(client->Publish(SampleNotice(absl::StrCat("rs-", i), {kB})));
  auto stub = v1::PeerExchange::NewStub(ChannelAs(pki_->Node(kB)));
  v1::SubscribeRequest open;
  open.mutable_open()->set_destination(kB);
  open.mutable_open()->set_cursor(0);

  // A stream that never sends `open` (or an Inbox stream `start`) ends after 10 s.
  grpc::ClientContext idle_ctx;
  idle_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto idle = stub->Subscribe(&idle_ctx);
  auto gateway = v1::Gateway::NewStub(ChannelAs(Office()));
  grpc::ClientContext idle_inbox_ctx;
  idle_inbox_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto idle_inbox = gateway->Inbox(&idle_inbox_ctx);

  // Open, take the first batch, go away without acking: five times. The batch is signed and
  // logged once, then sent again as it was.
  std::string first_manifest;
  for (int round = 0; round < 5; ++round) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto stream = stub->Subscribe(&ctx);
    ASSERT_TRUE(stream->Write(open));
    v1::SubscribeResponse resp;
    while (stream->Read(&resp) && !resp.has_batch()) {
    }
    ASSERT_TRUE(resp.has_batch()) << round;
    EXPECT_EQ(resp.batch().entries_size(), 3);
    if (round == 0) first_manifest = resp.batch().manifest().message();
    EXPECT_EQ(resp.batch().manifest().message(), first_manifest) << round;
    ctx.TryCancel();
    stream->Finish();
  }
  EXPECT_EQ(a_->Evidence(v1::Evidence::KIND_MANIFEST_SENT, kB).size(), 1u);

  // At most four streams per peer at once (the idle one is the first).
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::SubscribeRequest, v1::SubscribeResponse>>>
      streams;
  for (int i = 0; i < 3; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stub->Subscribe(contexts.back().get()));
    v1::SubscribeResponse resp;
    ASSERT_TRUE(streams.back()->Write(open));
    ASSERT_TRUE(streams.back()->Read(&resp)) << i;  // the first heartbeat: the stream is held
  }
  {
    grpc::ClientContext ctx;
    auto fifth = stub->Subscribe(&ctx);
    v1::SubscribeResponse resp;
    fifth->Write(open);
    EXPECT_FALSE(fifth->Read(&resp));
    grpc::Status s = fifth->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_EQ(common::ReasonOf(common::FromGrpcStatus(s)), "TOO_MANY_CALLS");
  }
  for (auto& c : contexts) c->TryCancel();
  for (auto& st : streams) st->Finish();

  v1::SubscribeResponse resp;
  EXPECT_FALSE(idle->Read(&resp));
  grpc::Status s = idle->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("open: not received within 10s"));
  v1::InboxResponse inbox_resp;
  EXPECT_FALSE(idle_inbox->Read(&inbox_resp));
  s = idle_inbox->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  EXPECT_THAT(s.error_message(), HasSubstr("start: not received within 10s"));
}


// Shell runs a bash script (for openssl); fails the test when it fails.
void Shell(const std::string& script) {
  RunResult r = RunCommand({"/bin/bash", "-euc", script});
  ASSERT_EQ(r.exit_code, 0) << script << "\n" << r.err;
}

TEST_F(HostileTest, CertificateWithoutAnIdentityIsRefusedAtTheHandshake) {
  StartBoth();
  const std::string pki = pki_->dir();
  Shell("cd " + pki + " && openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 "
        "-out nobody.key 2>/dev/null && openssl req -new -key nobody.key -subj /CN=nobody "
        "-out nobody.csr && openssl x509 -req -in nobody.csr -CA ca.crt -CAkey ca.key "
        "-CAcreateserial -days 1 -out nobody.crt -extfile <(printf "
        "'extendedKeyUsage=clientAuth') 2>/dev/null");
  grpc::Status s = RawUnary(pki + "/nobody", "/caseway.v1.Gateway/Publish", kGarbage);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_THAT(a_->log(), HasSubstr("TLS handshake refused"));
  EXPECT_THAT(a_->log(), HasSubstr("no SPIFFE id in the certificate"));
}

TEST_F(HostileTest, RevokedCertificateIsRefusedOnNewAndExistingConnectionsAndItsStreamsEnd) {
  const std::string crl_dir = dir_.path() + "/crl";
  ASSERT_EQ(mkdir(crl_dir.c_str(), 0700), 0);
  // A reads crl_dir every second.
  a_->set_tls_yaml("  crl_dir: " + crl_dir + "\n  crl_reload_interval: 1s\n");
  ASSERT_OK(a_->Start());
  const std::string office = Office();
  const std::string other = pki_->Client(kA, "other");
  // An existing connection, and an open Inbox stream on it.
  auto channel = ChannelAs(office);
  auto stub = v1::Gateway::NewStub(channel);
  auto status_call = [&](v1::Gateway::Stub* st) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::StatusResponse resp;
    return st->Status(&ctx, v1::StatusRequest(), &resp);
  };
  ASSERT_TRUE(status_call(stub.get()).ok());
  grpc::ClientContext inbox_ctx;
  inbox_ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto inbox = stub->Inbox(&inbox_ctx);
  v1::InboxRequest start;
  start.mutable_start()->set_purpose(kTestPurpose);
  start.mutable_start()->set_follow(true);
  ASSERT_TRUE(inbox->Write(start));
  v1::InboxResponse resp;
  ASSERT_TRUE(inbox->Read(&resp));  // caught_up: the stream is open

  // Revoke the office's certificate.
  const std::string pki = pki_->dir();
  Shell("cd " + pki + " && mkdir -p ca-db && : > ca-db/index.txt && "
        "printf '[ca]\ndefault_ca=d\n[d]\ndatabase=ca-db/index.txt\ncertificate=ca.crt\n"
        "private_key=ca.key\ndefault_md=sha256\ndefault_crl_days=7\n' > ca-db/ca.cnf && "
        "openssl ca -config ca-db/ca.cnf -revoke " + office + ".crt 2>/dev/null && "
        "openssl ca -config ca-db/ca.cnf -gencrl -out " + crl_dir + "/ca.crl 2>/dev/null");

  // Within a bounded time: the open stream ends, calls on the existing connection are refused,
  // and a new connection fails its handshake; another client of the same office is unaffected.
  while (inbox->Read(&resp)) {
  }
  grpc::Status ended = inbox->Finish();
  EXPECT_EQ(ended.error_code(), grpc::StatusCode::UNAUTHENTICATED) << ended.error_message();
  EXPECT_THAT(ended.error_message(), HasSubstr("is revoked"));
  grpc::Status again = status_call(stub.get());
  EXPECT_EQ(again.error_code(), grpc::StatusCode::UNAUTHENTICATED) << again.error_message();
  EXPECT_THAT(again.error_message(), HasSubstr("is revoked"));
  auto fresh = v1::Gateway::NewStub(ChannelAs(office));
  EXPECT_EQ(status_call(fresh.get()).error_code(), grpc::StatusCode::UNAVAILABLE);
  // The CLI, told only UNAVAILABLE by gRPC, says what it can find out.
  RunResult cli = RunCommand({BinDir() + "/caseway", "status", "--address", a_->address(), "--ca",
                              pki_->ca(), "--cert", office + ".crt", "--key", office + ".key"});
  EXPECT_NE(cli.exit_code, 0);
  EXPECT_THAT(cli.err, HasSubstr("TLS: the node closed the connection after the handshake without "
                                 "accepting this client's certificate, which is valid from"));
  EXPECT_THAT(cli.err, HasSubstr("either the node's clock is outside that window, or the node "
                                 "does not accept this certificate (revoked"));
  auto unaffected = v1::Gateway::NewStub(ChannelAs(other));
  EXPECT_TRUE(status_call(unaffected.get()).ok());
  EXPECT_THAT(a_->log(), HasSubstr("revocation lists loaded"));
  EXPECT_THAT(a_->log(), HasSubstr("refused caller: certificate revoked"));
  EXPECT_THAT(a_->log(), HasSubstr("TLS handshake refused"));

  // A CRL caught in the middle of a rewrite does not load: what it revoked stays revoked.
  Shell("printf 'not a CRL' > " + crl_dir + "/ca.crl");
  ASSERT_TRUE(WaitFor([&] { return a_->log().find("revocation list not loaded") != std::string::npos; },
                      absl::Seconds(10)));
  auto after_bad_file = v1::Gateway::NewStub(ChannelAs(office));
  EXPECT_EQ(status_call(after_bad_file.get()).error_code(), grpc::StatusCode::UNAVAILABLE);
}


// Threads of a process, from /proc.
int Threads(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  }
  return -1;
}

TEST_F(HostileTest, InboxStreamsHoldNoThreadAndNoPolling) {
  StartBoth();
  // Each client holds at most 16 streams (the next is refused): 200 streams from 13 clients.
  constexpr int kPerClient = 16;
  std::vector<std::unique_ptr<v1::Gateway::Stub>> stubs;
  for (int c = 0; c < 13; ++c) {
    stubs.push_back(v1::Gateway::NewStub(ChannelAs(pki_->Client(kA, absl::StrCat("office-", c)))));
  }
  const int before = Threads(a_->pid());
  constexpr int kStreams = 200;
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::vector<std::unique_ptr<grpc::ClientReaderWriter<v1::InboxRequest, v1::InboxResponse>>>
      streams;
  v1::InboxRequest start;
  start.mutable_start()->set_purpose(kTestPurpose);
  start.mutable_start()->set_follow(true);
  for (int i = 0; i < kStreams; ++i) {
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    streams.push_back(stubs[i / kPerClient]->Inbox(contexts.back().get()));
    ASSERT_TRUE(streams.back()->Write(start));
    v1::InboxResponse resp;
    ASSERT_TRUE(streams.back()->Read(&resp));  // caught_up: the stream is open and waiting
    ASSERT_TRUE(resp.has_caught_up());
  }
  // (Once two threads each: +400.)
  EXPECT_LT(Threads(a_->pid()) - before, 40) << "threads before: " << before;
  // A client holding 16 is refused its 17th, and the refusal says why.
  {
    grpc::ClientContext ctx;
    auto extra = stubs[0]->Inbox(&ctx);
    extra->Write(start);
    v1::InboxResponse resp;
    EXPECT_FALSE(extra->Read(&resp));
    grpc::Status s = extra->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
    EXPECT_THAT(s.error_message(), ::testing::HasSubstr("at most 16"));
    EXPECT_EQ(common::ReasonOf(common::FromGrpcStatus(s)), "TOO_MANY_CALLS");
  }
  // A notice arriving wakes every waiting stream.
  ASSERT_OK(b_->NewClient()->Publish(SampleNotice("wake-1", {kA})));
  for (auto& st : streams) {
    v1::InboxResponse resp;
    ASSERT_TRUE(st->Read(&resp));
    ASSERT_TRUE(resp.has_item());
    EXPECT_EQ(resp.item().notice().notice_id(), "wake-1");
  }
  for (auto& c : contexts) c->TryCancel();
  for (auto& st : streams) st->Finish();
}

}  // namespace
}  // namespace caseway::testing
