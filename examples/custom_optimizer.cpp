// Prototyping an optimizer: AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"),
// which kiln does not ship, written by deriving from train::Optimizer: slots in create_slots, the
// per-variable update in apply_dense, the once-per-step work in finish. Constraints, the global
// step, TRAIN_OP and the UPDATE_OPS guard come from the base class. Trained next to Adam on a linear
// regression: the decoupled decay (lr * wd * w each step, outside Adam's normalisation) trades a
// little training loss for a smaller weight norm.
#include <cmath>
#include <cstdio>
#include <kiln.hpp>
#include <xtensor/xrandom.hpp>

using namespace kiln;

// m <- b1 m + (1 - b1) g;  v <- b2 v + (1 - b2) g^2;  (b1^t, b2^t advance once per step)
// w <- w - lr * ( m / (1 - b1^t) / (sqrt(v / (1 - b2^t)) + eps) + wd * w )
class AdamW : public train::Optimizer {
 public:
  AdamW(double lr, double wd, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8)
      : Optimizer("AdamW"), lr_(lr), wd_(wd), b1_(b1), b2_(b2), eps_(eps) {}

 protected:
  void create_slots(const std::vector<Variable>& vars) override {
    create_non_slot_variable(b1_, "adamw_beta1_power", float32);
    create_non_slot_variable(b2_, "adamw_beta2_power", float32);
    for (auto& v : vars) zeros_slot(v, "m"), zeros_slot(v, "v");
  }
  Operation apply_dense(const Tensor& g, const Variable& w) override {
    const Variable m = slot(w, "m"), v = slot(w, "v");
    const Tensor b1t = non_slot_variable("adamw_beta1_power"), b2t = non_slot_variable("adamw_beta2_power");
    const Tensor m_t = assign(m, b1_ * m.value() + (1 - b1_) * g);
    const Tensor v_t = assign(v, b2_ * v.value() + (1 - b2_) * square(g));
    const Tensor adam_step = m_t / (1.0 - b1t) / (sqrt(v_t / (1.0 - b2t)) + eps_);
    return assign_sub(w, lr_ * (adam_step + wd_ * w.value())).op();
  }
  Operation finish(const std::vector<Operation>& updates, const std::string& name) override {
    std::vector<Operation> all = updates;
    {
      control_dependencies after(std::vector<GraphElement>(updates.begin(), updates.end()));
      for (auto [name_of_power, beta] : {std::pair{"adamw_beta1_power", b1_}, std::pair{"adamw_beta2_power", b2_}}) {
        const Variable power = non_slot_variable(name_of_power);
        all.push_back(assign(power, power.value() * beta).op());
      }
    }
    return Optimizer::finish(all, name);
  }

 private:
  double lr_, wd_, b1_, b2_, eps_;
};

int main() {
  constexpr std::size_t kSamples = 256, kFeatures = 16, kRelevant = 4;
  xt::random::seed(7);
  xt::xarray<float> x_data = xt::random::randn<float>({kSamples, kFeatures});
  xt::xarray<float> y_data = 0.1f * xt::random::randn<float>({kSamples, std::size_t{1}});
  for (std::size_t n = 0; n < kSamples; ++n)  // y = x . [1 2 3 4 0 ... 0] + noise
    for (std::size_t j = 0; j < kRelevant; ++j) y_data(n, 0) += static_cast<float>(j + 1) * x_data(n, j);

  Graph graph;
  auto as_default = graph.as_default();
  set_random_seed(1);
  Tensor x = placeholder(float32, {-1, kFeatures}, "x"), y = placeholder(float32, {-1, 1}, "y");
  std::vector<std::pair<std::string, Operation>> runs;
  std::vector<std::pair<Tensor, Variable>> models;
  for (std::string name : {"adam", "adamw"}) {
    variable_scope vs(name);
    Variable w = get_variable("w", {kFeatures, 1});
    Tensor loss = losses::mean_squared_error(y, matmul(x, w));
    Operation op = name == "adam" ? train::AdamOptimizer(0.05).minimize(loss) : AdamW(0.05, 0.1).minimize(loss);
    runs.emplace_back(name, op);
    models.emplace_back(loss, w);
  }
  Session sess;
  sess.run(global_variables_initializer());
  const FeedDict feeds{{x, x_data}, {y, y_data}};
  std::printf("step   adam loss  adamw loss\n");
  for (int step = 1; step <= 300; ++step) {
    sess.run({runs[0].second, runs[1].second}, feeds);
    if (step % 50 == 0)
      std::printf("%4d  %10.5f  %10.5f\n", step, sess.run(models[0].first, feeds).scalar<float>(),
                  sess.run(models[1].first, feeds).scalar<float>());
  }
  for (std::size_t i = 0; i < models.size(); ++i) {
    const auto w = sess.run(models[i].second).as<float>();
    std::printf("%-6s w[0..3] = %.3f %.3f %.3f %.3f (true 1 2 3 4)   |w| = %.3f\n", runs[i].first.c_str(), w(0, 0),
                w(1, 0), w(2, 0), w(3, 0), std::sqrt(xt::sum(w * w)()));
  }
  return 0;
}
