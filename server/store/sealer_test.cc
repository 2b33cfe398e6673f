#include "server/store/sealer.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "caseway/v1/notice.pb.h"
#include "tests/testing/status_matchers.h"

namespace caseway::server {
namespace {

using ::caseway::testing::StatusIs;
using ::testing::HasSubstr;

class SealerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/caseway-sealer-XXXXXX";
    dir_ = mkdtemp(tmpl);
    file_ = dir_ + "/storage.keys";
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  void Write(const std::string& text, mode_t mode = 0600) {
    std::ofstream(file_, std::ios::trunc) << text;
    chmod(file_.c_str(), mode);
  }
  std::unique_ptr<Sealer> Load() {
    auto s = Sealer::Load(file_);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? std::move(*s) : nullptr;
  }

  std::string dir_, file_;
};

constexpr char kKey1[] = "1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
constexpr char kKey2[] = "2 1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100\n";

TEST_F(SealerTest, SealedValuesOpenOnlyForTheirRowAndHideThePlainText) {
  Write(kKey1);
  auto sealer = Load();
  ASSERT_NE(sealer, nullptr);
  const std::string plain = "11010519491231002X 测试人";
  const std::string sealed = sealer->Seal(plain, NoticeContext("n-1"));
  EXPECT_EQ(sealed.find("11010519491231002X"), std::string::npos);
  EXPECT_EQ(Sealer::KeyOf(sealed), 1u);
  EXPECT_NE(sealer->Seal(plain, NoticeContext("n-1")), sealed);  // a fresh nonce each time
  auto opened = sealer->Open(sealed, NoticeContext("n-1"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, plain);
  // Moved to another row, or altered by one bit, it does not open.
  EXPECT_THAT(sealer->Open(sealed, NoticeContext("n-2")), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not open")));
  EXPECT_THAT(sealer->Open(sealed, InboxContext("n-1", 0)), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not open")));
  std::string flipped = sealed;
  flipped[10] ^= 1;
  EXPECT_THAT(sealer->Open(flipped, NoticeContext("n-1")), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("does not open")));
  // Empty stays empty (retention's mark); a plain notice passes through unchanged.
  EXPECT_EQ(sealer->Seal("", NoticeContext("n-1")), "");
  v1::Notice n;
  n.set_notice_id("n-1");
  const std::string bytes = n.SerializeAsString();
  EXPECT_EQ(Sealer::KeyOf(bytes), 0u);
  EXPECT_EQ(*sealer->Open(bytes, NoticeContext("n-1")), bytes);
  // A sealed value is never a notice: its first byte has an invalid wire type.
  EXPECT_FALSE(n.ParseFromString(sealed));
  // Without a key file a sealed body is refused, not returned as it is.
  EXPECT_THAT(OpenBody(nullptr, sealed, NoticeContext("n-1")),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("stored body of notice n-1: a stored value is sealed (encrypted "
                                 "at rest) and storage.key_file is not set")));
}

TEST_F(SealerTest, TheLastKeySealsAndEveryKeyOpens) {
  Write(kKey1);
  const std::string old = Load()->Seal("old", "ctx");
  Write(std::string(kKey1) + "# rotated\n" + kKey2);
  auto both = Load();
  EXPECT_EQ(both->current_key(), 2u);
  EXPECT_EQ(Sealer::KeyOf(both->Seal("new", "ctx")), 2u);
  EXPECT_EQ(*both->Open(old, "ctx"), "old");
  Write(kKey2);
  EXPECT_THAT(Load()->Open(old, "ctx"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("sealed with key 1")));
}

TEST_F(SealerTest, AKeyFileOthersCanReadOrThatIsMalformedIsRefusedNamingTheRule) {
  Write(kKey1, 0640);
  EXPECT_THAT(Sealer::Load(file_), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("open to group or others (mode 0640)")));
  Write("1 00ff\n");
  EXPECT_THAT(Sealer::Load(file_), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("line 1: the key must be 64 hexadecimal")));
  Write(std::string(kKey1) + kKey1);
  EXPECT_THAT(Sealer::Load(file_), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("line 2: key id 1 is listed twice")));
  Write("# nothing\n");
  EXPECT_THAT(Sealer::Load(file_), StatusIs(absl::StatusCode::kFailedPrecondition,
                                            HasSubstr("lists no key")));
  EXPECT_THAT(Sealer::Load(dir_ + "/missing"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("cannot open")));
}

TEST_F(SealerTest, AddKeyCreatesAPrivateFileAndAppendsTheNextId) {
  auto first = Sealer::AddKey(file_);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(*first, 1u);
  struct stat st {};
  ASSERT_EQ(stat(file_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string sealed = Load()->Seal("kept", "ctx");
  EXPECT_EQ(*Sealer::AddKey(file_), 2u);
  auto sealer = Load();
  EXPECT_EQ(sealer->current_key(), 2u);
  EXPECT_EQ(*sealer->Open(sealed, "ctx"), "kept");
  EXPECT_NE(Sealer::KeyOf(sealer->Seal("x", "ctx")), Sealer::KeyOf(sealed));
}

}  // namespace
}  // namespace caseway::server
