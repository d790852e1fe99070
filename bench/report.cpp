// bench_report RAW OUTDIR: turns the lines scripts/bench.sh collected into one table.
//
// RAW holds the bench programs' "info" and "result" lines (bench/harness.hpp) and bench.sh's own:
//   note<TAB>text                        a header line (machine, options, commit)
//   missing<TAB>framework<TAB>reason     a peer that is not installed
//   failed<TAB>framework<TAB>item<TAB>threads   a process that exited with an error
// Prints the table (one row per work item; per thread count each framework's median over all its
// samples and kiln / best peer), and writes OUTDIR/results.md (the same table in markdown) and
// OUTDIR/results.csv (one line per item, thread count and framework: median, min, max, samples).
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "bench/harness.hpp"
#include "bench/work_items.hpp"

namespace {

const std::vector<std::string> kFrameworks{"kiln", "torch", "dnnl"};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string field;
  std::istringstream in(s);
  while (std::getline(in, field, sep)) out.push_back(field);
  return out;
}

struct Raw {
  std::vector<std::string> notes;
  std::map<std::string, std::string> missing;                             // framework -> reason
  std::map<std::string, std::map<std::string, std::set<std::string>>> info;  // key -> framework -> values
  std::vector<std::string> items;                                          // in order of appearance
  std::map<std::string, std::string> units;
  std::map<std::tuple<std::string, std::string, int>, bench::Samples> samples;  // item, framework, threads
  std::set<std::tuple<std::string, std::string, int>> failed;
  std::set<int> threads;

  std::optional<double> median(const std::string& item, const std::string& framework, int threads) const {
    auto it = samples.find({item, framework, threads});
    if (it == samples.end() || it->second.empty()) return std::nullopt;
    return bench::median(it->second);
  }
  void add_item(const std::string& item) {
    if (std::find(items.begin(), items.end(), item) == items.end()) items.push_back(item);
  }
};

Raw read_raw(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  Raw raw;
  std::string line;
  while (std::getline(in, line)) {
    const auto f = split(line, '\t');
    if (f.empty()) continue;
    if (f[0] == "note" && f.size() >= 2) raw.notes.push_back(f[1]);
    else if (f[0] == "missing" && f.size() >= 3) raw.missing[f[1]] = f[2];
    else if (f[0] == "info" && f.size() >= 4) raw.info[f[2]][f[1]].insert(f[3]);
    else if (f[0] == "failed" && f.size() >= 4) {
      raw.add_item(f[2]);
      raw.failed.insert({f[2], f[1], std::stoi(f[3])});
    } else if (f[0] == "result" && f.size() >= 6) {
      const int threads = std::stoi(f[3]);
      raw.add_item(f[2]);
      raw.units[f[2]] = f[4];
      raw.threads.insert(threads);
      auto& s = raw.samples[{f[2], f[1], threads}];
      for (const auto& v : split(f[5], ',')) s.push_back(std::stod(v));
    }
  }
  return raw;
}

std::string format(double v) {
  char buf[32];
  const double a = v < 0 ? -v : v;
  std::snprintf(buf, sizeof buf, a >= 100 ? "%.0f" : a >= 10 ? "%.1f" : a >= 1 ? "%.2f" : "%.3f", v);
  return buf;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, name = "unknown CPU", family, model;
  int cpus = 0;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    std::string value = colon + 2 <= line.size() ? line.substr(colon + 2) : "";
    if (key == "processor") ++cpus;
    else if (key == "model name") name = value;
    else if (key == "cpu family") family = value;
    else if (key == "model") model = value;
  }
  return name + " (family " + family + ", model " + model + "), " + std::to_string(cpus) + " CPUs";
}

// The peers' row of an item: kiln's composed batch-norm rows compare with the fused case's peers.
std::string peer_item(const std::string& item) {
  const std::string suffix = " composed";
  if (item.size() > suffix.size() && item.compare(item.size() - suffix.size(), suffix.size(), suffix) == 0)
    return item.substr(0, item.size() - suffix.size());
  return item;
}

// Batch-norm bytes moved per forward + backward at the two-pass minimum: the forward reads x twice
// (statistics, normalization) and writes y; the backward reads x and dy twice (reductions, then
// dx) and writes dx: 8 floats per element.
std::optional<double> bn_bytes(const std::string& item) {
  for (const bench::BnCase& bc : bench::bn_cases())
    if (item == bc.name() || item == bench::composed_name(bc)) return 32.0 * static_cast<double>(bc.elements());
  return std::nullopt;
}

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
};

Table build_table(const Raw& raw) {
  Table t;
  t.header = {"work item", "unit"};
  for (int th : raw.threads) {
    for (const auto& fw : kFrameworks)
      t.header.push_back(fw + (raw.missing.count(fw) ? " (not installed)" : "") + " " + std::to_string(th) + "t");
    t.header.push_back("kiln/best " + std::to_string(th) + "t");
  }
  for (int th : raw.threads) t.header.push_back("kiln GB/s (% triad) " + std::to_string(th) + "t");

  for (const auto& item : raw.items) {
    const std::string unit = raw.units.count(item) ? raw.units.at(item) : "";
    const bool higher_is_better = unit == "GB/s";
    std::vector<std::string> row{item, unit};
    for (int th : raw.threads) {
      std::optional<double> kiln, best;
      for (const auto& fw : kFrameworks) {
        const std::string source = fw == "kiln" ? item : peer_item(item);
        const auto m = raw.median(source, fw, th);
        if (m) {
          row.push_back(format(*m));
          if (fw == "kiln") kiln = m;
          else if (!best || (higher_is_better ? *m > *best : *m < *best)) best = m;
        } else if (raw.failed.count({source, fw, th})) {
          row.push_back("failed");
        } else {
          row.push_back(raw.missing.count(fw) ? "n/a" : "-");
        }
      }
      row.push_back(kiln && best && !higher_is_better && *best > 0 ? format(*kiln / *best) : "-");
    }
    for (int th : raw.threads) {
      const auto bytes = bn_bytes(item);
      const auto kiln = raw.median(item, "kiln", th);
      const auto triad = raw.median(bench::kTriadName, "kiln", th);
      if (bytes && kiln && *kiln > 0) {
        const double gbps = *bytes / (*kiln * 1e-3) / 1e9;
        row.push_back(format(gbps) + (triad ? " (" + format(100 * gbps / *triad) + "%)" : ""));
      } else {
        row.push_back("-");
      }
    }
    t.rows.push_back(row);
  }
  return t;
}

std::vector<std::string> header_lines(const Raw& raw) {
  std::vector<std::string> lines{"CPU: " + cpu_model()};
  const std::map<std::string, std::string> titles{{"blas", "OpenBLAS core (openblas_get_corename)"},
                                                  {"isa", "oneDNN ISA"}};
  for (const auto& [key, by_fw] : raw.info) {
    std::string line = (titles.count(key) ? titles.at(key) : key) + ":";
    bool first = true;
    for (const auto& [fw, values] : by_fw) {
      line += (first ? " " : "; ") + fw;
      first = false;
      std::string joined;
      for (const auto& v : values) joined += (joined.empty() ? " " : " / ") + v;
      line += joined;
    }
    lines.push_back(line);
  }
  for (const auto& [fw, reason] : raw.missing) lines.push_back(fw + ": not installed (" + reason + "), kiln still measured");
  for (const auto& n : raw.notes) lines.push_back(n);
  return lines;
}

// Lines under the table for the targets that compare kiln with itself: the speed-up from the
// fewest to the most threads, and the composed batch-norm path against the fused one.
std::vector<std::string> footer_lines(const Raw& raw) {
  std::vector<std::string> lines;
  if (raw.threads.empty()) return lines;
  const int lo = *raw.threads.begin(), hi = *raw.threads.rbegin();
  std::string speedup, composed;
  for (const auto& item : raw.items) {
    const auto a = raw.median(item, "kiln", lo), b = raw.median(item, "kiln", hi);
    const bool is_bn = bn_bytes(item).has_value();
    if (lo != hi && a && b && *b > 0 && !is_bn && (raw.units.at(item) == "ms" || raw.units.at(item) == "s"))
      speedup += (speedup.empty() ? " " : ", ") + item + " " + format(*a / *b) + "x";
    const std::string fused = peer_item(item);
    if (fused == item) continue;
    std::string ratios;
    for (int th : raw.threads) {
      const auto c = raw.median(item, "kiln", th), f = raw.median(fused, "kiln", th);
      ratios += (ratios.empty() ? "" : " / ") + (c && f && *f > 0 ? format(*c / *f) : std::string("-"));
    }
    composed += (composed.empty() ? " " : ", ") + fused.substr(3) + " " + ratios;  // without "bn "
  }
  if (!speedup.empty())
    lines.push_back("kiln speed-up " + std::to_string(lo) + " -> " + std::to_string(hi) + " threads:" + speedup);
  std::string per_thread;
  for (int th : raw.threads) per_thread += (per_thread.empty() ? "" : " / ") + std::to_string(th) + "t";
  if (!composed.empty()) lines.push_back("kiln batch norm composed / fused (" + per_thread + "):" + composed);
  return lines;
}

void print_text(std::ostream& out, const std::vector<std::string>& head, const Table& t,
                const std::vector<std::string>& foot) {
  for (const auto& l : head) out << l << '\n';
  std::vector<std::size_t> width(t.header.size());
  for (std::size_t i = 0; i < t.header.size(); ++i) width[i] = t.header[i].size();
  for (const auto& r : t.rows)
    for (std::size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  auto print_row = [&](const std::vector<std::string>& r) {
    for (std::size_t i = 0; i < r.size(); ++i) {
      const std::size_t pad = width[i] - r[i].size();
      out << (i ? "  " : "") << (i == 0 ? r[i] + std::string(pad, ' ') : std::string(pad, ' ') + r[i]);
    }
    out << '\n';
  };
  print_row(t.header);
  for (const auto& r : t.rows) print_row(r);
  for (const auto& l : foot) out << l << '\n';
}

void print_markdown(std::ostream& out, const std::vector<std::string>& head, const Table& t,
                    const std::vector<std::string>& foot) {
  for (const auto& l : head) out << "- " << l << '\n';
  out << '\n';
  auto print_row = [&](const std::vector<std::string>& r) {
    out << '|';
    for (const auto& c : r) out << ' ' << c << " |";
    out << '\n';
  };
  print_row(t.header);
  out << '|';
  for (std::size_t i = 0; i < t.header.size(); ++i) out << (i < 2 ? "---|" : "---:|");
  out << '\n';
  for (const auto& r : t.rows) print_row(r);
  if (!foot.empty()) out << '\n';
  for (const auto& l : foot) out << "- " << l << '\n';
}

void write_csv(std::ostream& out, const Raw& raw) {
  out << "item,unit,threads,framework,median,min,max,samples\n";
  for (const auto& item : raw.items)
    for (int th : raw.threads)
      for (const auto& fw : kFrameworks) {
        auto it = raw.samples.find({item, fw, th});
        if (it == raw.samples.end() || it->second.empty()) continue;
        const auto& s = it->second;
        out << '"' << item << "\"," << raw.units.at(item) << ',' << th << ',' << fw << ','
            << bench::median(s) << ',' << *std::min_element(s.begin(), s.end()) << ','
            << *std::max_element(s.begin(), s.end()) << ',' << s.size() << '\n';
      }
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc != 3) throw std::invalid_argument("usage: bench_report RAW OUTDIR");
    const Raw raw = read_raw(argv[1]);
    const Table table = build_table(raw);
    const auto head = header_lines(raw);
    const auto foot = footer_lines(raw);
    print_text(std::cout, head, table, foot);
    const std::filesystem::path dir = argv[2];
    std::filesystem::create_directories(dir);
    std::ofstream md(dir / "results.md"), csv(dir / "results.csv");
    print_markdown(md, head, table, foot);
    write_csv(csv, raw);
    if (!md || !csv) throw std::runtime_error("cannot write into " + dir.string());
    std::cout << "wrote " << (dir / "results.md").string() << " and " << (dir / "results.csv").string() << '\n';
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_report: " << e.what() << '\n';
    return 1;
  }
}
