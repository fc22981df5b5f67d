"""The 95% t interval of a mean (of paired differences), for the result scripts' tables
(scripts/audio-negatives.sh, scripts/fashion-views.sh)."""
import math
import statistics

# Two-sided 95% quantiles of Student's t by degrees of freedom; past 30, the normal's.
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
       9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
       16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042}


def t95(df):
    """The quantile for df degrees of freedom (a df between listed ones takes the lower
    listed one's, the wider interval)."""
    if df > 30:
        return 1.960
    return T95[max(k for k in T95 if k <= df)]


def interval(d):
    """(mean, half-width) of the 95% t interval of the mean of d; NaN width for one value."""
    m = statistics.mean(d)
    if len(d) < 2:
        return m, float("nan")
    return m, t95(len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
