// Launches the 2-rank programs with `mpirun -np 2` (skipped, with a message, when kiln was built
// without MPI or mpirun is missing). Each launch is bounded by `timeout`, so a hang fails the test.
// Fast suite: mpi_program's scenarios (a few seconds). Slow suite (test cases named "slow.*", run by
// a second meson test): one epoch of the main job on a subset, 1 process vs 2 ranks at the same
// global batch.
#include <doctest/doctest.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>

#include <unistd.h>

#include "distributed/communicator.hpp"

namespace {

struct Run {
  int status = -1;
  std::string output;
};

Run shell(const std::string& command) {
  Run r;
  FILE* p = popen((command + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 4096> buf{};
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

// Empty when MPI cannot run here (the reason is printed).
bool mpi_ready() {
  if (!kiln::distributed::mpi_available()) {
    MESSAGE("skipped: kiln was built without MPI (install libopenmpi-dev openmpi-bin and reconfigure)");
    return false;
  }
  if (shell("command -v mpirun").status != 0) {
    MESSAGE("skipped: mpirun is not on PATH (install openmpi-bin)");
    return false;
  }
  if (geteuid() == 0) {  // Open MPI refuses root without these
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  }
  return true;
}

// 2 ranks on this machine; no core binding (the cores are shared), no leak checking inside MPI.
std::string mpirun(const std::string& program, int seconds) {
  return "timeout " + std::to_string(seconds) +
         " mpirun -np 2 --oversubscribe --bind-to none -x ASAN_OPTIONS=detect_leaks=0 " + program;
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

double final_accuracy(const std::string& output) {
  const auto at = output.rfind("final test accuracy ");
  REQUIRE(at != std::string::npos);
  return std::stod(output.substr(at + 20));
}

}  // namespace

TEST_CASE("distributed.two_ranks_match_one_process") {
  if (!mpi_ready()) return;
  const Run r = shell(mpirun(std::string(KILN_MPI_PROGRAM) + " equivalence", 120));
  INFO(r.output);
  std::cout << r.output;
  CHECK(r.status == 0);
  CHECK(contains(r.output, "PASSED"));
  CHECK_FALSE(contains(r.output, "CHECK FAILED"));
}

TEST_CASE("distributed.a_failing_rank_stops_the_job") {
  if (!mpi_ready()) return;
  const Run r = shell(mpirun(std::string(KILN_MPI_PROGRAM) + " bad_feed", 60));
  INFO(r.output);
  std::cout << r.output;
  CHECK(r.status != 0);
  CHECK(r.status != 124);  // not stopped by `timeout`: the job ended by itself
  CHECK(contains(r.output, "rank 1 caught: Cannot feed value of shape"));
  CHECK(contains(r.output, "rank 0 caught: AllReduce"));
  CHECK(contains(r.output, "on rank 0 of 2 timed out after"));
}

TEST_CASE("slow.distributed_fashion_mnist_epoch_matches_one_process") {
  if (!mpi_ready()) return;
  const std::string args = " --epochs 1 --train-limit 6000 --test-limit 2000 --batch-size 64 --progress none -o ''";
  const Run one = shell("timeout 600 " + std::string(KILN_FASHION_MNIST) + args);
  const Run two = shell(mpirun(std::string(KILN_FASHION_MNIST) + args + " --distributed", 600));
  INFO(one.output);
  INFO(two.output);
  std::cout << one.output << two.output;
  REQUIRE(one.status == 0);
  REQUIRE(two.status == 0);
  const double a1 = final_accuracy(one.output), a2 = final_accuracy(two.output);
  MESSAGE("1 process " << a1 << ", 2 ranks " << a2);
  CHECK(a2 >= a1 - 0.02);
}
