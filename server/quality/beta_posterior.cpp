#include "quality/beta_posterior.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace labelbroker::quality {

namespace {

constexpr double kTiny = 1e-300;        // keeps Lentz's denominators away from zero
constexpr double kFractionEps = 1e-15;  // relative size of the last continued-fraction factor
// The continued fraction needs O(sqrt(max(a, b))) terms; this covers shapes far beyond any gold
// count we will see, and a fraction that has not settled by then is still the best we have.
constexpr int kFractionMaxTerms = 100000;
constexpr int kQuantileMaxSteps = 1000;

void check_shape(double a, double b) {
  if (!(a > 0) || !(b > 0) || !std::isfinite(a) || !std::isfinite(b))
    throw std::invalid_argument("Beta shape parameters must be positive and finite, got a=" + std::to_string(a) +
                                " b=" + std::to_string(b));
}

// Continued fraction for I_x(a, b) by the modified Lentz method (Numerical Recipes' betacf).
// Converges fast for x < (a + 1) / (a + b + 2); callers use the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)
// for the other side.
double beta_continued_fraction(double a, double b, double x) {
  const double qab = a + b;
  const double qap = a + 1;
  const double qam = a - 1;
  double c = 1;
  double d = 1 - qab * x / qap;
  if (std::fabs(d) < kTiny) d = kTiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= kFractionMaxTerms; ++m) {
    const double m2 = 2.0 * m;
    // Even step.
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    h *= d * c;
    // Odd step.
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (std::fabs(d) < kTiny) d = kTiny;
    c = 1 + aa / c;
    if (std::fabs(c) < kTiny) c = kTiny;
    d = 1 / d;
    const double step = d * c;
    h *= step;
    if (std::fabs(step - 1) < kFractionEps) break;
  }
  return h;
}

// log B(a, b). glibc's lgamma also stores the sign in the global signgam; for positive arguments
// it always stores +1, so concurrent callers race only to write the same value.
double log_beta(double a, double b) {
  return std::lgamma(a) + std::lgamma(b) - std::lgamma(a + b);
}

double log_density(double a, double b, double x, double lbeta) {
  return (a - 1) * std::log(x) + (b - 1) * std::log1p(-x) - lbeta;
}

// log of a Gamma(shape, 1) draw. Shapes below 1 use Gamma(a) = Gamma(a + 1) * U^(1/a) in log space,
// because a direct draw with a tiny shape underflows to 0 and two zeros would make 0/0.
double log_gamma_draw(double shape, std::mt19937_64& rng) {
  if (shape >= 1) return std::log(std::gamma_distribution<double>(shape, 1.0)(rng));
  const double g = std::gamma_distribution<double>(shape + 1, 1.0)(rng);
  // U strictly inside (0, 1) from the top 53 bits, so log(U) is finite.
  const double u = (static_cast<double>(rng() >> 11) + 0.5) * 0x1.0p-53;
  return std::log(g) + std::log(u) / shape;
}

// The y in (0, 1/2] with P(Y <= y) = p_y for Y ~ Beta(a, b), known to lie there. `mirrored` says
// the caller's X is 1 - Y and `p` is P(X <= x): then p_y = 1 - p and the residual is computed as
// p - P(X <= 1 - y), the form that keeps a tiny p exact instead of rounding it away in 1 - p.
//
// Newton's method inside a shrinking bracket [lo, hi] around the root: a step that would leave the
// bracket (or a density of 0 or infinity) is replaced by bisection -- geometric while the bracket
// spans orders of magnitude, so quantiles like 1e-30 of tiny shapes take a few dozen steps -- so
// it always converges, and converges quadratically once close. Stops at a relative step of 1e-14.
double lower_half_quantile(double a, double b, double p, bool mirrored) {
  const double lbeta = log_beta(a, b);
  const double p_y = mirrored ? 1 - p : p;
  double lo = 0;
  double hi = 0.5;
  // Near 0, I_y(a, b) ~ y^a / (a B(a, b)): exact for the far left tail and a fair start elsewhere.
  double y = std::clamp(std::exp((std::log(p_y) + std::log(a) + lbeta) / a), 1e-300, 0.5);
  for (int step = 0; step < kQuantileMaxSteps; ++step) {
    const double f = mirrored ? p - beta_cdf(b, a, 1 - y) : beta_cdf(a, b, y) - p;
    if (f == 0) return y;
    if (f < 0)
      lo = y;
    else
      hi = y;
    const double density = std::exp(log_density(a, b, y, lbeta));
    double next = y - f / density;
    if (!(density > 0) || !std::isfinite(density) || !(next > lo && next < hi)) {
      if (lo == 0)
        next = hi / 16;
      else if (hi > 4 * lo)
        next = std::sqrt(lo * hi);
      else
        next = 0.5 * (lo + hi);
    }
    const double moved = std::fabs(next - y);
    y = next;
    if (moved <= 1e-14 * y || hi - lo <= 1e-14 * hi) break;
  }
  return y;
}

}  // namespace

double beta_cdf(double a, double b, double x) {
  check_shape(a, b);
  if (std::isnan(x)) throw std::invalid_argument("beta_cdf: x is NaN");
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  const double front = std::exp(a * std::log(x) + b * std::log1p(-x) - log_beta(a, b));
  if (x < (a + 1) / (a + b + 2)) return front * beta_continued_fraction(a, b, x) / a;
  return 1 - front * beta_continued_fraction(b, a, 1 - x) / b;
}

double beta_quantile(double a, double b, double p) {
  check_shape(a, b);
  if (!(p >= 0 && p <= 1)) throw std::invalid_argument("beta_quantile: p must be in [0, 1], got " + std::to_string(p));
  if (p == 0) return 0;
  if (p == 1) return 1;
  // Solve on the side of 1/2 where the quantile lies, through X ~ Beta(a, b) <=> 1 - X ~ Beta(b, a):
  // doubles near 0 are dense and near 1 are not, so a quantile close to 1 is found as 1 minus a
  // small one.
  if (p > beta_cdf(a, b, 0.5)) return 1 - lower_half_quantile(b, a, p, true);
  return lower_half_quantile(a, b, p, false);
}

AccuracyEstimate gold_accuracy(std::int64_t correct, std::int64_t n, BetaPrior prior, double credible) {
  if (n < 0 || correct < 0 || correct > n)
    throw std::invalid_argument("gold_accuracy: need 0 <= correct <= n, got correct=" + std::to_string(correct) +
                                " n=" + std::to_string(n));
  if (!(credible > 0 && credible < 1))
    throw std::invalid_argument("gold_accuracy: credible must be in (0, 1), got " + std::to_string(credible));
  check_shape(prior.alpha, prior.beta);
  const double a = prior.alpha + static_cast<double>(correct);
  const double b = prior.beta + static_cast<double>(n - correct);
  const double tail = (1 - credible) / 2;
  return AccuracyEstimate{a / (a + b), beta_quantile(a, b, tail), beta_quantile(a, b, 1 - tail), n, correct};
}

double sample_beta(double a, double b, std::mt19937_64& rng) {
  check_shape(a, b);
  // X / (X + Y) for X ~ Gamma(a), Y ~ Gamma(b), written as 1 / (1 + Y/X) on logs so that neither
  // underflow nor overflow of the draws can produce NaN.
  const double log_x = log_gamma_draw(a, rng);
  const double log_y = log_gamma_draw(b, rng);
  return 1 / (1 + std::exp(log_y - log_x));
}

}  // namespace labelbroker::quality
