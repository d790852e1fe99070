// The main job: a small CNN with batch normalization trained on Fashion-MNIST.
//
//   ./build/examples/fashion_mnist                       # the default recipe, 5 epochs
//   ./build/examples/fashion_mnist --epochs 1 --train-limit 10000 --optimizer momentum
//   ./build/examples/fashion_mnist --help
//   mpirun -np 2 ./build/examples/fashion_mnist --distributed   # data-parallel on 2 ranks (MPI)
//
// The graph is the seed's TF1 program (see examples/fashion_mnist_lib.hpp for the network):
// batch normalization fed a boolean `training` placeholder, and the train op built under
//   control_dependencies deps(get_collection(GraphKeys::UPDATE_OPS));
// Per epoch: a progress bar (plain lines when stdout is not a terminal), the training loss, the test
// accuracy in inference mode and the wall time. Writes <output-dir>/curves.csv, moving_stats.csv
// and graph.dot, draws graph.svg (with Graphviz's dot) and curves.png (with gnuplot) when those
// are installed (examples/report.hpp), and ends with where the files are.
// --trace N: training step N is traced (trace.json, and the time per op type at the end).
// --precise-bn N: after the last epoch, the batch-norm moving statistics are recomputed over N
// training batches (layers::recompute_batch_norm_statistics) and the test accuracy is printed
// before and after.
#include <CLI/CLI.hpp>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <exception>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "examples/data/idx.hpp"
#include "examples/fashion_mnist_lib.hpp"
#include "distributed/communicator.hpp"
#include "examples/report.hpp"
#include "framework/errors.hpp"

int main(int argc, char** argv) {
#if defined(__GLIBC__)
  // Every step allocates and frees activation buffers of a few MB. glibc serves those with mmap and
  // hands them back to the kernel at once, so every step pays fresh page faults (until glibc's
  // adaptive threshold catches up, which made the first epoch the slowest). Keeping them in the
  // heap cut minor page faults by about 3x and system time by about 2.5x on a short run.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  using kiln::examples::ProgressBar;
  kiln::examples::FashionMnistConfig cfg;
  cfg.output_dir = "out/fashion_mnist";

  CLI::App app{"Trains a CNN with batch normalization on Fashion-MNIST (kiln, TF1 graph mode)."};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  app.get_formatter()->column_width(34);
  app.add_option("-e,--epochs", cfg.epochs, "Training epochs")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("-b,--batch-size", cfg.batch_size, "Examples per training step")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--learning-rate,--lr", cfg.learning_rate,
                 "Initial learning rate (default: adam/rmsprop 1e-3, sgd 0.1, momentum 0.01)")
      ->check(CLI::PositiveNumber);
  app.add_option("--lr-decay", cfg.lr_decay, "Learning-rate factor applied after each epoch (1: constant)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  app.add_option("--optimizer", cfg.optimizer, "Optimizer (momentum uses 0.9)")
      ->capture_default_str()->check(CLI::IsMember({"adam", "sgd", "momentum", "rmsprop"}));
  app.add_option("--data-format", cfg.data_format, "Layout of images and activations")
      ->capture_default_str()->check(CLI::IsMember({"channels_last", "channels_first"}));
  bool fused = true;
  auto* fused_opt = app.add_flag("--fused,!--no-fused", fused,
                                 "Force batch norm's fused kernel on or off (default: fused when possible)");
  app.add_flag("--renorm", cfg.renorm, "Batch renormalization (uses the composed batch-norm path)");
  app.add_option("--bn-momentum", cfg.bn_momentum, "Momentum of batch norm's moving averages")
      ->capture_default_str()->check(CLI::Range(0.0, 0.9999));
  app.add_option("--hidden-units", cfg.hidden_units, "Units of the hidden dense layer (0: none)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_flag("--hidden-bn,!--no-hidden-bn", cfg.hidden_batch_norm,
               "Batch norm on the hidden layer (dense without bias -> batch norm -> relu)")
      ->capture_default_str();
  app.add_option("--dropout", cfg.dropout, "Dropout rate after the hidden layer (0: none)")
      ->capture_default_str()->check(CLI::Range(0.0, 0.99));
  app.add_option("--seed", cfg.seed, "Seed of the initializers, dropout and shuffling")->capture_default_str();
  app.add_option("-j,--threads", cfg.threads, "Threads of kiln's pool, ops and their loops (0: all cores; BLAS "
                                              "runs single-threaded inside it); results are reproducible "
                                              "for a fixed seed and thread count")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--data-dir", cfg.data_dir, "Directory with the four *-ubyte.gz files (Debian package "
                                             "dataset-fashion-mnist)")
      ->capture_default_str();
  app.add_option("-o,--output-dir", cfg.output_dir, "Where curves.csv, graph.dot and their pictures go")->capture_default_str();
  app.add_option("--train-limit", cfg.train_limit, "Train on the first N examples only (0: all 60000)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--test-limit", cfg.test_limit, "Evaluate on the first N test examples only (0: all 10000)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--eval-batch-size", cfg.eval_batch_size, "Examples per evaluation step")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--trace", cfg.trace_step,
                 "Trace training step N (from 1): <output-dir>/trace.json for Perfetto or chrome://tracing, "
                 "and the time per op type");
  app.add_option("--precise-bn", cfg.precise_bn_batches,
                 "After training, recompute the batch-norm statistics over N training batches and print the "
                 "test accuracy before and after (0: no)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  std::string progress = "auto";
  app.add_option("--progress", progress, "bar (in place), lines (a line per tenth of an epoch), none, "
                                         "or auto (bar on a terminal, else lines)")
      ->capture_default_str()->check(CLI::IsMember({"auto", "bar", "lines", "none"}));
  app.add_flag("--distributed", cfg.distributed,
               "Data-parallel training over the ranks of mpirun (each global batch split between them)");
  app.add_flag("--sync-bn,!--no-sync-bn", cfg.synchronized_bn,
               "With --distributed: batch norm statistics over the global batch")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (cfg.distributed) kiln::distributed::init();
  const bool root = kiln::distributed::rank() == 0;

  if (fused_opt->count() > 0) cfg.fused = fused;
  cfg.progress = progress == "bar"     ? ProgressBar::Mode::bar
                 : progress == "lines" ? ProgressBar::Mode::lines
                 : progress == "none"  ? ProgressBar::Mode::none
                                       : ProgressBar::auto_mode();
  try {
    const auto result = kiln::examples::train_fashion_mnist(cfg, &std::cout);
    if (!root) return 0;
    const auto& last = result.epochs.back();
    double total = 0;
    for (const auto& e : result.epochs) total += e.train_seconds + e.eval_seconds;
    if (result.precise_bn_test_accuracy)
      std::cout << "test accuracy with precise batch-norm statistics " << std::fixed << std::setprecision(4)
                << *result.precise_bn_test_accuracy << " (moving averages: " << last.test_accuracy << ")\n";
    std::cout << "final test accuracy " << std::fixed << std::setprecision(4) << last.test_accuracy << " after "
              << result.epochs.size() << (result.epochs.size() == 1 ? " epoch (" : " epochs (")
              << ProgressBar::format_duration(total) << " training + evaluation)\n";
    if (!cfg.output_dir.empty()) {
      // The last lines: where the pictures (and the text files they are drawn from) are.
      const std::filesystem::path dir = cfg.output_dir;
      const auto graph = kiln::examples::render_graph(dir / "graph.dot", dir / "graph.svg");
      const auto curves = kiln::examples::plot_curves(dir);
      std::cout << "graph:  " << (graph.written ? graph.path : dir / "graph.dot").string() << '\n'
                << "curves: " << (curves.written ? curves.path : dir / "curves.csv").string() << '\n';
      for (const auto* p : {&graph, &curves})
        if (!p->written) std::cout << "  (" << p->note << ")\n";
    }
    if (!result.trace_summary.empty()) {
      std::cout << "\nstep " << cfg.trace_step << ", time per op type:\n" << result.trace_summary;
      if (!result.trace_path.empty())
        std::cout << "trace:  " << result.trace_path << "  (open in https://ui.perfetto.dev or chrome://tracing)\n";
    }
    return 0;
  } catch (const kiln::data::IdxError& e) {
    std::cerr << "fashion_mnist: " << e.what() << '\n';
  } catch (const kiln::Error& e) {
    std::cerr << "fashion_mnist: kiln error: " << e.what() << '\n';
  } catch (const std::exception& e) {
    std::cerr << "fashion_mnist: " << e.what() << '\n';
  }
  // One rank failed: stop the others now rather than leave them waiting in a collective.
  if (cfg.distributed && kiln::distributed::size() > 1) kiln::distributed::abort("fashion_mnist failed on this rank");
  return 1;
}
