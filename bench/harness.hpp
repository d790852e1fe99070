#pragma once
// The shared harness of kiln's benchmarks (bench/README.md): one program per framework (kiln,
// libtorch, oneDNN) registers its work items under common names; scripts/bench.sh runs each
// (item, framework, thread count) as a fresh process, interleaved, and bench_report turns the
// collected lines into one table.
//
// A benchmark program:
//   int main(int argc, char** argv) {
//     bench::Registry items;
//     items.add("mlp step", "ms", [](const bench::Config& c) { ...; return bench::time_steps(c, step); });
//     return bench::main(argc, argv, "kiln", items, [](int threads) { /* apply the thread count */ });
//   }
// Command line: --list (prints "name<TAB>unit" per item), or --item NAME [--threads N] [--iters N]
// [--min-time S] [--limit N]. It prints
//   info<TAB>framework<TAB>key<TAB>value                     (e.g. the BLAS core, once per process)
//   result<TAB>framework<TAB>item<TAB>threads<TAB>unit<TAB>v1,v2,...   (one sample per timed step)
// Exit status 0, or 1 with the exception's message on stderr.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <dlfcn.h>
#include <exception>
#include <functional>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace bench {

struct Config {
  int threads = 1;
  int iters = 10;          // timed steps at least
  double min_time = 0.5;   // seconds of timed steps at least (the step count grows to reach it)
  std::int64_t limit = 0;  // item-specific size limit (Fashion-MNIST: training examples; 0: all)
};

using Samples = std::vector<double>;

struct Item {
  std::string name;
  std::string unit;  // of the samples: "ms", "us/op", "s", "MB", "GB/s"
  std::function<Samples(const Config&)> run;
};

class Registry {
 public:
  void add(std::string name, std::string unit, std::function<Samples(const Config&)> run) {
    items_.push_back({std::move(name), std::move(unit), std::move(run)});
  }
  const std::vector<Item>& items() const { return items_; }

 private:
  std::vector<Item> items_;
};

inline double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

/// Runs `step` `warmup` times untimed, then at least c.iters times and at least c.min_time seconds
/// (at most 1000 steps); returns each step's time in milliseconds divided by `per_step`.
inline Samples time_steps(const Config& c, const std::function<void()>& step, double per_step = 1,
                          int warmup = 2) {
  for (int i = 0; i < warmup; ++i) step();
  Samples out;
  const auto start = std::chrono::steady_clock::now();
  while (out.size() < 1000 &&
         (out.size() < static_cast<std::size_t>(c.iters) || seconds_since(start) < c.min_time)) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    out.push_back(seconds_since(t0) * 1e3 / per_step);
  }
  return out;
}

inline double median(Samples v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Peak resident set size of this process so far, in MB (getrusage: ru_maxrss is in KiB).
inline double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;
}

/// The OpenBLAS core this process runs (found at run time, so any BLAS library may be loaded):
/// "Haswell", "Prescott" (the generic kernel), ..., or "not OpenBLAS".
inline std::string blas_core() {
  using Fn = char* (*)();
  auto fn = reinterpret_cast<Fn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  return fn ? std::string(fn()) : std::string("not OpenBLAS");
}

inline void print_info(const std::string& framework, const std::string& key, const std::string& value) {
  std::cout << "info\t" << framework << '\t' << key << '\t' << value << '\n';
}

/// Parses the command line, applies the thread count, runs one item (or lists them).
inline int main(int argc, char** argv, const std::string& framework, const Registry& registry,
                const std::function<void(int threads)>& set_threads) {
  try {
    Config c;
    std::string item;
    bool list = false;
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--list") list = true;
      else if (a == "--item") item = value();
      else if (a == "--threads") c.threads = std::stoi(value());
      else if (a == "--iters") c.iters = std::stoi(value());
      else if (a == "--min-time") c.min_time = std::stod(value());
      else if (a == "--limit") c.limit = std::stoll(value());
      else throw std::invalid_argument("unknown argument " + a);
    }
    if (list) {
      for (const Item& it : registry.items()) std::cout << it.name << '\t' << it.unit << '\n';
      return 0;
    }
    auto found = std::find_if(registry.items().begin(), registry.items().end(),
                              [&](const Item& it) { return it.name == item; });
    if (found == registry.items().end()) throw std::invalid_argument("no item '" + item + "' (see --list)");
    if (c.threads < 1) throw std::invalid_argument("--threads must be >= 1");
    set_threads(c.threads);
    const Samples samples = found->run(c);
    std::ostringstream line;
    line << "result\t" << framework << '\t' << found->name << '\t' << c.threads << '\t' << found->unit << '\t';
    for (std::size_t i = 0; i < samples.size(); ++i) line << (i ? "," : "") << samples[i];
    std::cout << line.str() << '\n' << std::flush;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << framework << " bench: " << e.what() << '\n';
    return 1;
  }
}

}  // namespace bench
