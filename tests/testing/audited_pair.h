// AuditedPairTest: two peered nodes of one federation (360102 and 440305) and a coordinator's
// certificate, for tests that exchange and then audit through the real `caseway audit` CLI.
#ifndef CASEWAY_TESTS_TESTING_AUDITED_PAIR_H_
#define CASEWAY_TESTS_TESTING_AUDITED_PAIR_H_

#include <gtest/gtest.h>

#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "tests/testing/harness.h"

namespace caseway::testing {

// AuditedPairTest makes the PKI and the two node processes (not started) in SetUp; Audit runs
// `caseway audit ARGS...` as the coordinator, with its state and bundles in the test's directory.
class AuditedPairTest : public ::testing::Test {
 protected:
  static constexpr char kA[] = "360102";
  static constexpr char kB[] = "440305";

  void SetUp() override {
    pki_ = std::make_unique<Pki>(dir_.path() + "/pki", "fed.test");
    a_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), kA);
    b_ = std::make_unique<NodeProcess>(pki_.get(), dir_.path(), kB);
    a_->AddPeer(*b_);
    b_->AddPeer(*a_);
    auditor_ = pki_->Auditor("coordinator");
  }

  RunResult Audit(std::vector<std::string> args) {
    return RunCommand(AuditCommand(*pki_, auditor_, dir_.path(), std::move(args)));
  }
  // AuditUntil runs the audit again (for at most 20 s) until its output matches the regular
  // expression `want`: the last exchanges are audited once both nodes' checkpoints cover them.
  RunResult AuditUntil(const std::vector<std::string>& args, const std::string& want) {
    RunResult r;
    const std::regex re(want);
    WaitFor([&] {
      r = Audit(args);
      return std::regex_search(r.out, re);
    }, absl::Seconds(20));
    return r;
  }

  TempDir dir_;
  std::unique_ptr<Pki> pki_;
  std::unique_ptr<NodeProcess> a_, b_;
  std::string auditor_;
};

}  // namespace caseway::testing

#endif  // CASEWAY_TESTS_TESTING_AUDITED_PAIR_H_
