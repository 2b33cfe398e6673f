// deploy/demo.sh, run as a new user would (with the build already made): the demo federation
// starts, exchanges notices of every kind and stops its nodes.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tests/testing/harness.h"

namespace caseway::testing {
namespace {

using ::testing::HasSubstr;

// Bindable reports whether a server could listen on `port` now. SO_REUSEADDR, as servers set it,
// ignores connections in TIME_WAIT but not a process still listening.
bool Bindable(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

// ThreeFreePorts finds a base port with base, base+1 and base+2 free (the demo's layout).
int ThreeFreePorts() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int base = FreePort();
    if (base < 65000 && Bindable(base) && Bindable(base + 1) && Bindable(base + 2)) return base;
  }
  return 0;
}

TEST(DemoTest, DemoFederationExchangesEveryKindAndStops) {
  TempDir dir;
  int base = ThreeFreePorts();
  ASSERT_NE(base, 0);
  std::string build = BinDir().substr(0, BinDir().rfind('/'));
  std::string cmd = "CASEWAY_SKIP_BUILD=1 CASEWAY_BUILD_DIR=" + build +
                    " CASEWAY_DEMO_DIR=" + dir.path() + "/run CASEWAY_DEMO_PORT=" +
                    std::to_string(base) + " bash " + SourceDir() + "/deploy/demo.sh --no-wait";
  RunResult r = RunCommand({"/bin/bash", "-c", cmd});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const char* kind : {"residence_change", "verification_request", "check_report", "pregnancy",
                           "birth ", "birth_service_registration", "certificate",
                           "technical_service", "fee", "status_change", "feedback", "void"}) {
    EXPECT_THAT(r.out, HasSubstr(kind));
  }
  EXPECT_THAT(r.err, HasSubstr("13 notice(s) acknowledged"));
  EXPECT_THAT(r.out, HasSubstr("Things to try"));
  // 440305's to-do: the departure, birth, birth-service registration and two fee notices still
  // owe its reply (built-in policy); 360102's verification request was answered; 360111 owes
  // 440305 a confirmation of the arrival.
  EXPECT_THAT(r.out, HasSubstr("we owe 5 replies (0 overdue); we are owed 1"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("demo-002-verification +verification_request .* answered by sz-2026-feedback-1"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("owed us +360111 +sz-2026-arrival-1"));
  // The public security bureau reads the certificate, with the holder's name and number only.
  EXPECT_THAT(r.out, ::testing::ContainsRegex(
                         "published +demo-007-certificate +certificate +subject fields: id_number, "
                         "name; certificate fields: "));
  EXPECT_THAT(r.out, ::testing::Not(::testing::ContainsRegex("published +demo-001-departure")));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("PROVEN +13 +2 +15"));
  EXPECT_THAT(r.out, HasSubstr("OK: every exchange matched"));
  // The coordinator's assessment of the current month, and its page.
  EXPECT_THAT(r.out, ::testing::ContainsRegex("Assessment 20[0-9][0-9]-[01][0-9] "));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("notification_timeliness +origin +360102 +440305"));
  EXPECT_THAT(r.out, HasSubstr("The joint-meeting page: "));
  // The demo stopped its nodes: the ports are free again.
  EXPECT_TRUE(WaitFor([&] { return Bindable(base) && Bindable(base + 1) && Bindable(base + 2); },
                      absl::Seconds(10)));
}

// The demo with 440305 as an active/standby pair on PostgreSQL (deploy/demo.sh --postgres): the
// same exchange, then the active node killed and the standby serving in its place.
TEST(DemoTest, WithPostgresTheStandbyTakesOverAndTheExchangeGoesOn) {
  TempDir dir;
  int base = 0;
  for (int attempt = 0; attempt < 50 && base == 0; ++attempt) {
    int b = FreePort();
    if (b < 65000 && Bindable(b) && Bindable(b + 1) && Bindable(b + 2) && Bindable(b + 3) &&
        Bindable(b + 10)) {
      base = b;
    }
  }
  ASSERT_NE(base, 0);
  std::string build = BinDir().substr(0, BinDir().rfind('/'));
  std::string cmd = "CASEWAY_SKIP_BUILD=1 CASEWAY_BUILD_DIR=" + build + " CASEWAY_DEMO_DIR=" +
                    dir.path() + "/run CASEWAY_DEMO_PORT=" + std::to_string(base) + " bash " +
                    SourceDir() + "/deploy/demo.sh --postgres --no-wait";
  RunResult r = RunCommand({"/bin/bash", "-c", cmd});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("the standby"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("PROVEN +13 +2 +15"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("the standby of 440305 took over after [0-9.]+ s"));
  EXPECT_THAT(r.out, HasSubstr("440305 (its node b now) received it: 14 notices"));
  EXPECT_THAT(r.out, HasSubstr("OK"));
  // Nodes and PostgreSQL stopped; the server's directory removed.
  EXPECT_TRUE(WaitFor([&] {
    return Bindable(base) && Bindable(base + 1) && Bindable(base + 2) && Bindable(base + 3) &&
           Bindable(base + 10);
  }, absl::Seconds(10)));
}

}  // namespace
}  // namespace caseway::testing
