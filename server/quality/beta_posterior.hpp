#pragma once
// A vendor's accuracy on gold items as a Beta posterior: the point estimate and an equal-tailed
// credible interval that routing and the dashboard show, and posterior draws for Thompson sampling.
//
// Guarantees: pure functions of their arguments (no I/O, no clock, no global state), so they are
// safe to call from any number of threads. Randomness comes only from the generator passed in,
// so a seeded generator gives the same draws on the same standard library. Invalid arguments
// (non-positive shape parameters, correct > n, probabilities outside [0, 1]) throw
// std::invalid_argument; nothing else throws.
#include <cstdint>
#include <random>

namespace labelbroker::quality {

// Pseudo-counts of correct (alpha) and wrong (beta) answers before any gold is seen. The default
// Beta(1, 1) is uniform: no opinion about a new vendor.
struct BetaPrior {
  double alpha = 1;
  double beta = 1;
};

struct AccuracyEstimate {
  double mean = 0;   // posterior mean (alpha + correct) / (alpha + beta + n)
  double lower = 0;  // quantile (1 - credible) / 2 of the posterior
  double upper = 0;  // quantile (1 + credible) / 2 of the posterior
  std::int64_t n = 0;
  std::int64_t correct = 0;
};

// Posterior Beta(prior.alpha + correct, prior.beta + n - correct) of a vendor that answered
// `correct` of `n` gold items right. With n == 0 this is the prior itself.
AccuracyEstimate gold_accuracy(std::int64_t correct, std::int64_t n, BetaPrior prior = {}, double credible = 0.90);

// P(X <= x) for X ~ Beta(a, b): the regularized incomplete beta function I_x(a, b), accurate to
// about 1e-14 absolute. x outside [0, 1] is clamped.
double beta_cdf(double a, double b, double x);

// The p-quantile of Beta(a, b): the x in [0, 1] with beta_cdf(a, b, x) == p, to a relative 1e-14
// of min(x, 1 - x) (or the nearest double when that is finer than doubles near 1 can show).
double beta_quantile(double a, double b, double p);

// One draw from Beta(a, b), in [0, 1].
double sample_beta(double a, double b, std::mt19937_64& rng);

}  // namespace labelbroker::quality
