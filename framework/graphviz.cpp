// DOT pictures of a graph (see framework/graphviz.hpp). Two steps: `group_ops` decides what is
// drawn (one node per op, or per collapsed scope, variable, op series and cond branch) and
// `reduced_control_edges` leaves out the control edges a longer path implies; then Boost.Graph's
// subgraph DOT writer prints the result (a subgraph named "cluster..." is a Graphviz cluster).
// Boost's writer quotes every attribute value, so labels are plain text lines ("\n"), not
// Graphviz's HTML labels.
#include "framework/graphviz.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <ostream>
#include <set>
#include <tuple>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <boost/graph/adjacency_list.hpp>
#include <boost/graph/graphviz.hpp>
#include <boost/graph/subgraph.hpp>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#include "framework/errors.hpp"
#include "framework/graph.hpp"
#include "framework/op_registry.hpp"

namespace kiln {

namespace {

using detail::Node;
using Attrs = std::map<std::string, std::string>;
using Path = std::vector<std::string>;  // a name scope, split at '/'

// Colours of the picture (the legend names them).
constexpr const char* kUpdateColor = "#d62728";     // edges into and out of UPDATE_OPS
constexpr const char* kTrainingFill = "#ffe9a8";    // the training-only (true) branch
constexpr const char* kBoxFill = "#e8f0fb";         // a collapsed scope
constexpr const char* kVariableFill = "#e3f2e1";    // a variable

Path split(const std::string& name) {
  Path parts;
  std::string::size_type begin = 0;
  for (;;) {
    const auto end = name.find('/', begin);
    parts.push_back(name.substr(begin, end - begin));
    if (end == std::string::npos) return parts;
    begin = end + 1;
  }
}

std::string join(const Path& p, std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n && i < p.size(); ++i) s += (i ? "/" : "") + p[i];
  return s;
}

bool in_true_branch(const Node* n) {
  for (const auto* c = n->cond_ctx; c; c = c->parent)
    if (c->branch == 1) return true;
  return false;
}

std::string tensor_text(const Node* n, std::size_t i) {
  return std::string(dtype_name(n->output_dtypes[i])) + n->output_shapes[i].to_string();
}

// "AddN_7" -> "AddN"; a name without a numeric suffix is its own series.
std::string series_base(const std::string& leaf) {
  const auto pos = leaf.rfind('_');
  if (pos == std::string::npos || pos == 0 || pos + 1 == leaf.size()) return leaf;
  for (auto i = pos + 1; i < leaf.size(); ++i)
    if (!std::isdigit(static_cast<unsigned char>(leaf[i]))) return leaf;
  return leaf.substr(0, pos);
}

// One drawn node.
struct Item {
  enum class Kind { op, variable, series, box } kind = Kind::op;
  std::string name;     // op, variable or series name; the scope of a box
  Path cluster;         // the scopes drawn around it
  bool training = false;
  std::vector<const Node*> ops;  // in creation order
};

struct Grouping {
  std::vector<Item> items;
  std::vector<int> item_of;  // by node id
};

// The variable whose initializer, assign and slots an op belongs to: the shortest prefix of its
// name (at a '/') naming a VariableV2 op; "" when none.
std::string variable_unit(const std::string& name, const std::set<std::string>& variables) {
  for (auto pos = name.find('/'); ; pos = name.find('/', pos + 1)) {
    const std::string prefix = name.substr(0, pos);
    if (variables.count(prefix)) return prefix;
    if (pos == std::string::npos) return "";
  }
}

Grouping group_ops(const Graph& g, int depth, bool split_training) {
  const auto n = static_cast<std::size_t>(g.num_nodes());
  std::set<std::string> variables;
  for (int i = 0; i < g.num_nodes(); ++i)
    if (g.node(i)->def->type == "VariableV2") variables.insert(g.node(i)->name);

  // Per op: the scope it lives in (a variable's initializer, assign and slots live with it).
  std::vector<Path> scope(n);
  std::vector<std::string> unit(n);
  std::set<std::string> has_subscope;
  for (std::size_t i = 0; i < n; ++i) {
    const Node* node = g.node(static_cast<int>(i));
    if (depth > 0) unit[i] = variable_unit(node->name, variables);
    scope[i] = split(unit[i].empty() ? node->name : unit[i]);
    scope[i].pop_back();
    for (std::size_t k = 1; k < scope[i].size(); ++k) has_subscope.insert(join(scope[i], k));
  }

  // Per op: the key of its drawn node and that node's description.
  std::vector<std::string> key(n);
  std::vector<Item> proto(n);
  std::map<std::string, int> series_size;
  for (std::size_t i = 0; i < n; ++i) {
    const Node* node = g.node(static_cast<int>(i));
    Item& item = proto[i];
    item.training = split_training && in_true_branch(node);
    const std::string branch = item.training ? "#training" : "";
    item.cluster = scope[i];
    item.name = node->name;
    key[i] = "op:" + node->name;
    if (depth == 0) continue;
    std::size_t box = 0;  // length of the collapsed scope, 0: none
    for (std::size_t k = 1; k <= scope[i].size() && box == 0; ++k)
      if (static_cast<int>(k) >= depth || !has_subscope.count(join(scope[i], k))) box = k;
    if (box > 0) {
      item.kind = Item::Kind::box;
      item.name = join(scope[i], box);
      item.cluster.resize(box - 1);
      key[i] = "box:" + item.name + branch;
    } else if (!unit[i].empty()) {
      item.kind = Item::Kind::variable;
      item.name = unit[i];
      key[i] = "var:" + item.name + branch;
    } else {
      const std::string base = series_base(node->name.substr(node->name.rfind('/') + 1));
      const std::string where = join(scope[i], scope[i].size());
      item.kind = Item::Kind::series;
      item.name = where.empty() ? base : where + "/" + base;
      key[i] = "series:" + item.name + '|' + node->def->type + branch;
      ++series_size[key[i]];
    }
  }

  Grouping out;
  out.item_of.assign(n, -1);
  std::map<std::string, int> index;  // key -> item, items in the creation order of their first op
  for (std::size_t i = 0; i < n; ++i) {
    const Node* node = g.node(static_cast<int>(i));
    if (proto[i].kind == Item::Kind::series && series_size[key[i]] < 2) {  // a series of one
      proto[i].kind = Item::Kind::op;
      proto[i].name = node->name;
      key[i] = "op:" + node->name;
    }
    auto [it, fresh] = index.emplace(key[i], static_cast<int>(out.items.size()));
    if (fresh) out.items.push_back(std::move(proto[i]));
    out.items[static_cast<std::size_t>(it->second)].ops.push_back(node);
    out.item_of[i] = it->second;
  }
  return out;
}

// Control edges u -> v not implied by a longer path u -> w -> ... -> v (v runs after u anyway).
// One breadth-first walk per op with control successors, from all its successors: a control
// successor reached again inside the walk is implied. Assumes no cycle (a node on a cycle
// reaches itself), so a cyclic graph, which Session::run rejects, keeps all its control edges.
std::vector<std::pair<const Node*, const Node*>> reduced_control_edges(const Graph& g) {
  const auto n = static_cast<std::size_t>(g.num_nodes());
  std::vector<std::vector<std::size_t>> succ(n);
  std::map<int, std::vector<const Node*>> control;  // source id -> control successors
  for (std::size_t v = 0; v < n; ++v) {
    const Node* node = g.node(static_cast<int>(v));
    for (const auto& in : node->inputs) succ[static_cast<std::size_t>(in.node->id)].push_back(v);
    for (const Node* c : node->control_inputs) {
      succ[static_cast<std::size_t>(c->id)].push_back(v);
      control[c->id].push_back(node);
    }
  }
  std::vector<std::pair<const Node*, const Node*>> kept;
  // Kahn's algorithm: with a cycle, keep everything.
  std::vector<int> indegree(n, 0);
  for (std::size_t u = 0; u < n; ++u)
    for (std::size_t v : succ[u]) ++indegree[v];
  std::vector<std::size_t> queue;
  for (std::size_t u = 0; u < n; ++u)
    if (indegree[u] == 0) queue.push_back(u);
  for (std::size_t head = 0; head < queue.size(); ++head)
    for (std::size_t v : succ[queue[head]])
      if (--indegree[v] == 0) queue.push_back(v);
  const bool acyclic = queue.size() == n;

  std::vector<int> reached_by(n, -1);  // the source whose walk reached the node
  for (const auto& [src, targets] : control) {
    if (acyclic) {
      const auto& start = succ[static_cast<std::size_t>(src)];
      queue.assign(start.begin(), start.end());
      for (std::size_t head = 0; head < queue.size(); ++head)
        for (std::size_t w : succ[queue[head]])
          if (reached_by[w] != src) {
            reached_by[w] = src;
            queue.push_back(w);
          }
    }
    for (const Node* t : targets)
      if (reached_by[static_cast<std::size_t>(t->id)] != src) kept.emplace_back(g.node(src), t);
  }
  return kept;
}


// ---- labels

std::string leaf_name(const std::string& name) { return name.substr(name.rfind('/') + 1); }

std::string op_label(const Node* n, bool short_name) {
  std::string label = short_name ? leaf_name(n->name) : n->name;
  if (n->def->type != leaf_name(n->name)) label += "\\n" + n->def->type;
  constexpr std::size_t kShown = 3;
  for (std::size_t k = 0; k < n->output_shapes.size() && k < kShown; ++k) label += "\\n" + tensor_text(n, k);
  if (n->output_shapes.size() > kShown)
    label += "\\n+" + std::to_string(n->output_shapes.size() - kShown) + " outputs";
  return label;
}

// A collapsed scope: name, op count, the output the next op reads, the layer's own variables and
// its UPDATE_OPS.
std::string box_label(const Item& item, const std::string& output, int updates) {
  std::string label = leaf_name(item.name);
  if (item.training) label += "\\ntraining branch";
  label += "\\n" + std::to_string(item.ops.size()) + (item.ops.size() == 1 ? " op" : " ops");
  if (!output.empty()) label += " \u2192 " + output;
  std::set<std::string> variables;
  for (const Node* n : item.ops)
    if (n->def->type == "VariableV2") variables.insert(n->name);
  for (const Node* n : item.ops) {
    if (n->def->type != "VariableV2" || variable_unit(n->name, variables) != n->name) continue;  // a slot
    label += "\\n" + n->name.substr(item.name.size() + 1) + " " + n->output_shapes[0].to_string();
  }
  if (updates > 0) label += "\\n" + std::to_string(updates) + " in UPDATE_OPS";
  return label;
}

// A variable with its initializer, assign and optimizer slots.
std::string variable_label(const Item& item, bool short_name) {
  std::string label = short_name ? leaf_name(item.name) : item.name;
  int slots = 0;
  for (const Node* n : item.ops) {
    if (n->def->type != "VariableV2") continue;
    if (n->name == item.name) label += "\\n" + tensor_text(n, 0);
    else ++slots;
  }
  if (slots > 0) label += "\\n+" + std::to_string(slots) + (slots == 1 ? " slot" : " slots");
  return label;
}

// ---- the DOT writer

// Boost.Graph's subgraph with Graphviz attribute maps: a subgraph's graph_name "cluster_N" makes
// it a Graphviz cluster; its graph attributes (label, style) are the cluster's.
using DotBase = boost::adjacency_list<
    boost::vecS, boost::vecS, boost::directedS, boost::property<boost::vertex_attribute_t, Attrs>,
    boost::property<boost::edge_index_t, int, boost::property<boost::edge_attribute_t, Attrs>>,
    boost::property<boost::graph_name_t, std::string,
                    boost::property<boost::graph_graph_attribute_t, Attrs,
                                    boost::property<boost::graph_vertex_attribute_t, Attrs,
                                                    boost::property<boost::graph_edge_attribute_t, Attrs>>>>>;
using DotGraph = boost::subgraph<DotBase>;

struct EdgeInfo {
  bool data = false, control = false;
  bool data_update = false, control_update = false;  // touches an UPDATE_OPS op
  std::set<int> indices;                              // output indices of the data edges
};

}  // namespace

void write_graphviz(const Graph& graph, std::ostream& os) { write_graphviz(graph, os, GraphvizOptions{}); }

void write_graphviz(const Graph& graph, std::ostream& os, const GraphvizOptions& options) {
  if (options.collapse_below < 0)
    throw ValueError("write_graphviz: collapse_below must be >= 0 (0: one node per op), got " +
                     std::to_string(options.collapse_below));
  if (options.rankdir != "TB" && options.rankdir != "LR" && options.rankdir != "BT" && options.rankdir != "RL")
    throw ValueError("write_graphviz: rankdir must be TB, LR, BT or RL, got '" + options.rankdir + "'");
  const bool collapsed = options.collapse_below > 0;
  const Grouping grouping = group_ops(graph, options.collapse_below, options.shade_training_branch);
  const auto& items = grouping.items;
  auto item_of = [&](const Node* n) { return grouping.item_of[static_cast<std::size_t>(n->id)]; };

  std::set<const Node*> update_ops;
  if (options.highlight_update_ops)
    for (const auto& e : graph.get_collection(GraphKeys::UPDATE_OPS)) update_ops.insert(e.op().node());

  // Edges between drawn nodes, and per box the first output read outside it (its "output shape").
  std::map<std::pair<int, int>, EdgeInfo> edges;
  std::vector<std::pair<int, std::string>> output(items.size(), {-1, ""});  // consumer id, text
  auto sibling = [&](int a, int b) {  // one scope's box and its training-branch box
    return items[static_cast<std::size_t>(a)].kind == Item::Kind::box &&
           items[static_cast<std::size_t>(a)].name == items[static_cast<std::size_t>(b)].name;
  };
  for (int v = 0; v < graph.num_nodes(); ++v) {
    const Node* node = graph.node(v);
    const int iv = item_of(node);
    for (const auto& in : node->inputs) {
      const int iu = item_of(in.node);
      if (iu == iv) continue;
      EdgeInfo& e = edges[{iu, iv}];
      e.data = true;
      e.data_update = e.data_update || update_ops.count(in.node) || update_ops.count(node);
      if (in.node->output_dtypes.size() > 1) e.indices.insert(in.index);
      auto& out = output[static_cast<std::size_t>(iu)];
      if (!sibling(iu, iv) && out.first < 0)
        out = {v, tensor_text(in.node, static_cast<std::size_t>(in.index))};
    }
  }
  for (const auto& [u, v] : reduced_control_edges(graph)) {
    const int iu = item_of(u), iv = item_of(v);
    if (iu == iv) continue;
    EdgeInfo& e = edges[{iu, iv}];
    e.control = true;
    e.control_update = e.control_update || update_ops.count(u) || update_ops.count(v);
  }

  DotGraph dot(items.size());
  boost::get_property(dot, boost::graph_name) = "kiln";
  std::string legend = "solid: data    dashed: control dependency";
  if (options.highlight_update_ops) legend += "    red: into or out of UPDATE_OPS";
  if (options.shade_training_branch) legend += "    yellow: training-only branch (true branch of a cond)";
  legend += "    cylinder: variable";
  if (collapsed) legend += "    blue box: a name scope, collapsed";
  boost::get_property(dot, boost::graph_graph_attribute) = {
      {"rankdir", options.rankdir}, {"fontname", "Helvetica"}, {"fontsize", "10"}, {"label", legend},
      {"labelloc", "b"}, {"nodesep", "0.25"}, {"ranksep", "0.35"}, {"compound", "true"}};
  boost::get_property(dot, boost::graph_vertex_attribute) = {
      {"fontname", "Helvetica"}, {"fontsize", "9"}, {"margin", "0.08,0.03"}};
  boost::get_property(dot, boost::graph_edge_attribute) = {{"arrowsize", "0.6"}, {"color", "#555555"}, {"fontname", "Helvetica"}, {"fontsize", "8"}};

  // Clusters: one subgraph per name scope that holds a drawn node, nested like the scopes.
  std::map<std::string, DotGraph*> clusters;
  std::map<std::string, std::string> cluster_names;  // scope -> "cluster_N"
  for (std::size_t i = 0; i < items.size() && options.clusters; ++i) {
    DotGraph* parent = &dot;
    const Path& path = items[i].cluster;
    for (std::size_t k = 1; k <= path.size(); ++k) {
      auto [it, fresh] = clusters.emplace(join(path, k), nullptr);
      if (fresh) {
        it->second = &parent->create_subgraph();
        cluster_names[it->first] = "cluster_" + std::to_string(clusters.size());
        boost::get_property(*it->second, boost::graph_name) = cluster_names[it->first];
        boost::get_property(*it->second, boost::graph_graph_attribute) = {
            {"label", path[k - 1]}, {"style", "rounded"}, {"color", "#9a9a9a"}, {"labeljust", "l"}};
      }
      parent = it->second;
      boost::add_vertex(static_cast<DotGraph::vertex_descriptor>(i), *parent);
    }
  }

  auto vertex_attrs = boost::get(boost::vertex_attribute, dot);
  for (std::size_t i = 0; i < items.size(); ++i) {
    const Item& item = items[i];
    const bool short_name = options.clusters;
    int updates = 0;
    for (const Node* n : item.ops) updates += update_ops.count(n) ? 1 : 0;
    Attrs a;
    switch (item.kind) {
      case Item::Kind::op:
        a = {{"shape", "box"}, {"label", op_label(item.ops[0], short_name)}};
        if (item.ops[0]->def->type == "VariableV2") {
          a["shape"] = "cylinder";
          a["fillcolor"] = kVariableFill;
        }
        break;
      case Item::Kind::series:
        a = {{"shape", "box"}, {"peripheries", "2"},
             {"label", (short_name ? leaf_name(item.name) : item.name) + " \u00d7" + std::to_string(item.ops.size()) +
                           "\\n" + item.ops[0]->def->type}};
        break;
      case Item::Kind::variable:
        a = {{"shape", "cylinder"}, {"fillcolor", kVariableFill}, {"label", variable_label(item, short_name)}};
        break;
      case Item::Kind::box:
        a = {{"shape", "box"}, {"fillcolor", kBoxFill}, {"label", box_label(item, output[i].second, updates)}};
        break;
    }
    a["style"] = item.kind == Item::Kind::box ? "rounded,filled" : "filled";
    if (!a.count("fillcolor")) a["fillcolor"] = "white";
    if (item.training) a["fillcolor"] = kTrainingFill;
    if (updates > 0) {
      a["color"] = kUpdateColor;
      a["penwidth"] = "2";
    }
    boost::put(vertex_attrs, static_cast<DotGraph::vertex_descriptor>(i), a);
  }

  // Edges to draw. Collapsed, an edge into (out of) a top cluster from outside ends at the
  // cluster's border (Graphviz's lhead / ltail), so the dozens of edges from the forward pass into
  // "gradients" become one per layer; an UPDATE_OPS edge keeps its exact tail.
  struct Drawn {
    int tail = -1, head = -1;  // representative nodes
    std::string ltail, lhead;  // clusters clipped at
    Attrs attrs;
  };
  std::map<std::tuple<std::string, std::string, bool, bool>, Drawn> drawn;  // ends, control, update
  auto draw = [&](int u, int v, bool control, bool update, const std::string& label) {
    std::string tail_key = std::to_string(u), head_key = std::to_string(v), ltail, lhead;
    if (collapsed && options.clusters) {
      const Path& cu = items[static_cast<std::size_t>(u)].cluster;
      const Path& cv = items[static_cast<std::size_t>(v)].cluster;
      std::size_t common = 0;
      while (common < cu.size() && common < cv.size() && cu[common] == cv[common]) ++common;
      if (cv.size() > common) head_key = lhead = cluster_names.at(join(cv, common + 1));
      if (cu.size() > common && !update) tail_key = ltail = cluster_names.at(join(cu, common + 1));
    }
    auto [it, fresh] = drawn.try_emplace({tail_key, head_key, control, update});
    Drawn& d = it->second;
    if (fresh) {
      d.ltail = ltail;
      d.lhead = lhead;
      if (control) d.attrs["style"] = "dashed";
      if (update) {
        d.attrs["color"] = kUpdateColor;
        d.attrs["penwidth"] = "2";
      }
      if (!label.empty()) d.attrs["label"] = label;
    }
    d.tail = std::max(d.tail, u);                       // the cluster's last node
    d.head = d.head < 0 ? v : std::min(d.head, v);      // the cluster's first node
  };
  for (const auto& [uv, e] : edges) {
    if (e.data) {
      std::string label;
      if (!collapsed)
        for (int k : e.indices) label += (label.empty() ? "" : ",") + std::to_string(k);
      draw(uv.first, uv.second, false, e.data_update, label);
    }
    // A control edge next to a data edge adds nothing unless it is an UPDATE_OPS one.
    if (e.control && (!e.data || e.control_update)) draw(uv.first, uv.second, true, e.control_update, "");
  }
  auto edge_attrs = boost::get(boost::edge_attribute, dot);
  for (auto& [key, d] : drawn) {
    if (d.tail == d.head) continue;
    if (!d.ltail.empty()) d.attrs["ltail"] = d.ltail;
    if (!d.lhead.empty()) d.attrs["lhead"] = d.lhead;
    const auto e = boost::add_edge(static_cast<DotGraph::vertex_descriptor>(d.tail),
                                   static_cast<DotGraph::vertex_descriptor>(d.head), dot).first;
    boost::put(edge_attrs, e, d.attrs);
  }
  boost::write_graphviz(os, dot);
}

}  // namespace kiln
