#include "common/log.h"

#include <cstdio>
#include <map>
#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "common/json.h"

namespace caseway::common {
namespace {

LogLevel g_level = LogLevel::kInfo;
bool g_json = false;
std::mutex g_mu;

const char* LevelName(LogLevel l) {
  switch (l) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

}  // namespace

void ConfigureLog(LogLevel level, bool json) {
  g_level = level;
  g_json = json;
}

LogLevel ParseLogLevel(absl::string_view name) {
  if (name == "debug") return LogLevel::kDebug;
  if (name == "warn") return LogLevel::kWarn;
  if (name == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

namespace {
void WriteLine(LogLevel level, absl::string_view message, const LogField* begin,
               const LogField* end);
}  // namespace

void Log(LogLevel level, absl::string_view message, std::initializer_list<LogField> fields) {
  if (level < g_level) return;
  WriteLine(level, message, fields.begin(), fields.end());
}

namespace {
void WriteLine(LogLevel level, absl::string_view message, const LogField* begin,
               const LogField* end) {
  const auto fields = absl::MakeConstSpan(begin, end);
  std::string ts = absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone());
  std::string line;
  if (g_json) {
    line = absl::StrCat("{\"time\":\"", ts, "\",\"level\":\"", LevelName(level), "\",\"msg\":");
    AppendJsonString(message, line);
    for (const auto& [k, v] : fields) {
      line.push_back(',');
      AppendJsonString(k, line);
      line.push_back(':');
      AppendJsonString(v, line);
    }
    line += "}\n";
  } else {
    line = absl::StrCat(ts, " ", LevelName(level), " ", message);
    for (const auto& [k, v] : fields) {
      // Quote values that could be mistaken for more fields or lines (peer-supplied text).
      bool plain = !v.empty() && v.find_first_of(" \"=\n\r\t") == std::string::npos;
      absl::StrAppend(&line, " ", k, "=", plain ? v : JsonQuote(v));
    }
    line.push_back('\n');
  }
  std::lock_guard<std::mutex> lock(g_mu);
  fputs(line.c_str(), stderr);
  fflush(stderr);
}
}  // namespace

void LogLimited(LogLevel level, absl::string_view message,
                std::initializer_list<LogField> fields) {
  if (level < g_level) return;
  struct Window {
    absl::Time start = absl::InfinitePast();
    int written = 0;
    int64_t suppressed = 0;
  };
  static std::mutex* const mu = new std::mutex;
  static auto* const windows = new std::map<std::string, Window, std::less<>>;
  int64_t suppressed = 0;
  {
    std::lock_guard<std::mutex> lock(*mu);
    auto it = windows->find(message);
    if (it == windows->end()) {
      if (windows->size() > 1000) windows->clear();  // messages are constants: never many
      it = windows->emplace(std::string(message), Window{}).first;
    }
    Window& w = it->second;
    const absl::Time now = absl::Now();
    if (now - w.start >= absl::Seconds(1)) {
      w.start = now;
      w.written = 0;
    }
    if (w.written >= 10) {
      ++w.suppressed;
      return;
    }
    ++w.written;
    suppressed = w.suppressed;
    w.suppressed = 0;
  }
  if (suppressed == 0) return Log(level, message, fields);
  std::vector<LogField> all(fields);
  all.emplace_back("suppressed", absl::StrCat(suppressed));
  WriteLine(level, message, all.data(), all.data() + all.size());
}

}  // namespace caseway::common
