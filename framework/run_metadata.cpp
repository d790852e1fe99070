#include "framework/run_metadata.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <sstream>

namespace kiln {

namespace {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += ch;
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += ch;
    }
  }
  return out + "\"";
}

std::string scope_of(const std::string& name) {
  const auto slash = name.rfind('/');
  return slash == std::string::npos ? "(root)" : name.substr(0, slash);
}

std::string microseconds(std::int64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", static_cast<double>(ns) / 1e3);
  return buf;
}

}  // namespace

std::string RunMetadata::chrome_trace() const {
  std::ostringstream os;
  os << "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[";
  std::set<int> threads;
  for (const auto& t : step_stats) threads.insert(t.thread);
  bool first = true;
  for (int th : threads) {
    os << (first ? "" : ",") << "{\"name\":\"thread_name\",\"ph\":\"M\",\"pid\":0,\"tid\":" << th
       << ",\"args\":{\"name\":" << json_string(th == 0 ? "caller" : "kiln worker " + std::to_string(th)) << "}}";
    first = false;
  }
  for (const auto& t : step_stats) {
    std::string shapes;
    for (const auto& s : t.output_shapes) shapes += (shapes.empty() ? "" : ", ") + s.to_string();
    os << (first ? "" : ",") << "{\"name\":" << json_string(t.name) << ",\"cat\":" << json_string(scope_of(t.name))
       << ",\"ph\":\"X\",\"pid\":0,\"tid\":" << t.thread << ",\"ts\":" << microseconds(t.start_ns)
       << ",\"dur\":" << microseconds(t.end_ns - t.start_ns) << ",\"args\":{\"op\":" << json_string(t.type)
       << ",\"name\":" << json_string(t.name) << ",\"output_shapes\":" << json_string(shapes)
       << ",\"bytes\":" << t.bytes << "}}";
    first = false;
  }
  os << "]}";
  return os.str();
}

std::string RunMetadata::summary() const {
  struct Row {
    std::int64_t count = 0, total_ns = 0;
  };
  std::map<std::string, Row> by_type;
  std::int64_t all_ns = 0;
  for (const auto& t : step_stats) {
    Row& r = by_type[t.type];
    ++r.count;
    r.total_ns += t.end_ns - t.start_ns;
    all_ns += t.end_ns - t.start_ns;
  }
  std::vector<std::pair<std::string, Row>> rows(by_type.begin(), by_type.end());
  std::stable_sort(rows.begin(), rows.end(), [](auto& a, auto& b) { return a.second.total_ns > b.second.total_ns; });
  std::ostringstream os;
  char line[160];
  std::snprintf(line, sizeof line, "%-28s %7s %12s %12s %7s\n", "op type", "count", "total ms", "mean us", "share");
  os << line;
  for (const auto& [type, r] : rows) {
    std::snprintf(line, sizeof line, "%-28s %7lld %12.3f %12.2f %6.1f%%\n", type.c_str(), static_cast<long long>(r.count),
                  static_cast<double>(r.total_ns) / 1e6, static_cast<double>(r.total_ns) / 1e3 / static_cast<double>(r.count),
                  all_ns > 0 ? 100.0 * static_cast<double>(r.total_ns) / static_cast<double>(all_ns) : 0.0);
    os << line;
  }
  std::snprintf(line, sizeof line, "%-28s %7zu %12.3f\n", "all ops", step_stats.size(), static_cast<double>(all_ns) / 1e6);
  os << line;
  return os.str();
}

}  // namespace kiln
