//! Summing range-query series by a [`Grouping`] (`sum by`/`sum without`).
//!
//! Series fall into groups by [`Grouping::group_of`]; a group's points are
//! the sums of its series' points at equal timestamps. Step buckets start at
//! the range's start for every series, so bucketed points of different
//! series meet at the same timestamps. Groups come out sorted by labels.
//! Sums wrap, as profile totals do.

use super::SeriesPoints;
use crate::model::{Grouping, Labels};
use std::collections::BTreeMap;

/// The series of a range query summed per group.
pub fn sum_series(series: Vec<SeriesPoints>, grouping: &Grouping) -> Vec<SeriesPoints> {
    let mut groups: BTreeMap<Labels, BTreeMap<i64, i64>> = BTreeMap::new();
    for sp in series {
        let points = groups.entry(grouping.group_of(&sp.labels)).or_default();
        for (t, v) in sp.points {
            let p = points.entry(t).or_insert(0);
            *p = p.wrapping_add(v);
        }
    }
    groups
        .into_iter()
        .map(|(labels, points)| SeriesPoints {
            labels,
            points: points.into_iter().collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::METRIC_NAME;

    fn sp(pairs: &[(&str, &str)], points: &[(i64, i64)]) -> SeriesPoints {
        SeriesPoints {
            labels: Labels::from_pairs(pairs.iter().copied()),
            points: points.to_vec(),
        }
    }

    #[test]
    fn sums_points_of_a_group_at_equal_times() {
        let series = vec![
            sp(
                &[(METRIC_NAME, "cpu"), ("pod", "a"), ("zone", "x")],
                &[(0, 1), (10, 2)],
            ),
            sp(
                &[(METRIC_NAME, "cpu"), ("pod", "b"), ("zone", "x")],
                &[(10, 5), (20, 7)],
            ),
            sp(
                &[(METRIC_NAME, "cpu"), ("pod", "c"), ("zone", "y")],
                &[(0, 100)],
            ),
        ];
        let by_zone = sum_series(series.clone(), &Grouping::By(vec!["zone".into()]));
        assert_eq!(
            by_zone,
            vec![
                sp(&[("zone", "x")], &[(0, 1), (10, 7), (20, 7)]),
                sp(&[("zone", "y")], &[(0, 100)]),
            ]
        );
        let all = sum_series(series.clone(), &Grouping::By(vec![]));
        assert_eq!(all, vec![sp(&[], &[(0, 101), (10, 7), (20, 7)])]);
        let without_pod = sum_series(series, &Grouping::Without(vec!["pod".into()]));
        assert_eq!(without_pod, by_zone);
    }
}
