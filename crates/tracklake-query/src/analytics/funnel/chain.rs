//! A user's chain through the funnel's steps, and the counts of a group of
//! users (the definitions are in the comment of [`super`]).

use super::{MAX_STEPS, Step};

/// One event of a user: when, which step type, and its breakdown value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Ev<'a> {
    pub at: i64,
    pub kind: u8,
    pub value: Option<&'a str>,
}

impl Ev<'_> {
    pub fn unpack(packed: i64) -> (i64, u8) {
        (packed.div_euclid(16), packed.rem_euclid(16) as u8)
    }
}

/// The chain that decides a user: how many steps it reached, when, and
/// the breakdown value of its first event.
pub(super) struct Chain<'a> {
    pub level: usize,
    pub times: [i64; MAX_STEPS],
    pub value: Option<&'a str>,
}

/// The user's best chain (see the module's comment) over their events,
/// sorted; `kinds[i]` is step i's event type. `times` is scratch space.
pub(super) fn best_chain<'a>(
    events: &[Ev<'a>],
    kinds: &[u8],
    within: i64,
    times: &mut [Vec<i64>],
) -> Option<Chain<'a>> {
    for list in times.iter_mut() {
        list.clear();
    }
    for e in events {
        if let Some(list) = times.get_mut(e.kind as usize) {
            list.push(e.at);
        }
    }
    let mut best: Option<Chain> = None;
    for start in events.iter().filter(|e| e.kind == kinds[0]) {
        let mut chain = Chain {
            level: 1,
            times: [0; MAX_STEPS],
            value: start.value,
        };
        chain.times[0] = start.at;
        let deadline = start.at.saturating_add(within);
        for (i, &kind) in kinds.iter().enumerate().skip(1) {
            let list = &times[kind as usize];
            let prev = chain.times[i - 1];
            let next = list.partition_point(|&t| t <= prev);
            match list.get(next) {
                Some(&t) if t <= deadline => {
                    chain.times[i] = t;
                    chain.level = i + 1;
                }
                _ => break,
            }
        }
        if best.as_ref().is_none_or(|b| chain.level > b.level) {
            let done = chain.level == kinds.len();
            best = Some(chain);
            if done {
                break;
            }
        }
    }
    best
}

/// Counts and medians of the chains of one group of users.
#[derive(Default)]
pub(super) struct Counts {
    reached: Vec<u64>,
    gaps: Vec<Vec<i64>>,
}

impl Counts {
    pub fn add(&mut self, chain: &Chain, steps: usize) {
        if self.reached.is_empty() {
            self.reached = vec![0; steps];
            self.gaps = vec![Vec::new(); steps];
        }
        for i in 0..chain.level {
            self.reached[i] += 1;
            if i > 0 {
                self.gaps[i].push(chain.times[i] - chain.times[i - 1]);
            }
        }
    }

    pub fn merge(&mut self, other: Counts) {
        if self.reached.is_empty() {
            *self = other;
            return;
        }
        for (i, (n, mut gaps)) in other.reached.into_iter().zip(other.gaps).enumerate() {
            self.reached[i] += n;
            self.gaps[i].append(&mut gaps);
        }
    }

    pub fn steps(mut self, names: &[String]) -> Vec<Step> {
        if self.reached.is_empty() {
            self.reached = vec![0; names.len()];
            self.gaps = vec![Vec::new(); names.len()];
        }
        let first = self.reached[0];
        names
            .iter()
            .enumerate()
            .map(|(i, name)| Step {
                event_type: name.clone(),
                users: self.reached[i],
                conversion: if first == 0 {
                    0.0
                } else {
                    self.reached[i] as f64 / first as f64
                },
                median_secs_from_previous: (i > 0)
                    .then(|| median_micros(&mut self.gaps[i]))
                    .flatten()
                    .map(|m| m / 1e6),
            })
            .collect()
    }
}

/// The median (the mean of the two middle values of an even count).
pub(crate) fn median_micros(values: &mut [i64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mid = values.len() / 2;
    let (_, &mut upper, _) = values.select_nth_unstable(mid);
    if values.len() % 2 == 1 {
        return Some(upper as f64);
    }
    let lower = values[..mid].iter().copied().max().unwrap_or(upper);
    Some((lower as f64 + upper as f64) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(events: &[(i64, u8)], kinds: &[u8], within: i64) -> Option<(usize, Vec<i64>)> {
        let mut events: Vec<Ev> = events
            .iter()
            .map(|&(at, kind)| Ev {
                at,
                kind,
                value: None,
            })
            .collect();
        events.sort_unstable();
        let mut times = vec![Vec::new(); 3];
        best_chain(&events, kinds, within, &mut times)
            .map(|c| (c.level, c.times[..c.level].to_vec()))
    }

    #[test]
    fn greedy_chains() {
        // a at 0 and 10, b at 5 and 20, c at 30, within 25: a@0 reaches
        // b@5 but c@30 is too late; a@10, b@20, c@30 is the chain.
        let events = [(30, 2), (0, 0), (5, 1), (10, 0), (20, 1)];
        assert_eq!(chain(&events, &[0, 1, 2], 25), Some((3, vec![10, 20, 30])));
        // Without a first step there is no chain.
        assert_eq!(chain(&[(5, 1), (30, 2)], &[0, 1, 2], 25), None);
    }

    #[test]
    fn ties_are_not_sequences() {
        assert_eq!(chain(&[(7, 0), (7, 1)], &[0, 1], 100).unwrap().0, 1);
        // The same type twice needs two events at different times.
        assert_eq!(chain(&[(7, 0), (7, 0)], &[0, 0], 100).unwrap().0, 1);
        assert_eq!(chain(&[(7, 0), (8, 0)], &[0, 0], 100).unwrap().0, 2);
    }

    #[test]
    fn packing() {
        for (at, kind) in [(0, 0), (1_764_000_000_000_000, 9), (-5, 3)] {
            assert_eq!(Ev::unpack(at * 16 + i64::from(kind)), (at, kind));
        }
    }

    #[test]
    fn medians() {
        assert_eq!(median_micros(&mut []), None);
        assert_eq!(median_micros(&mut [5]), Some(5.0));
        assert_eq!(median_micros(&mut [9, 1, 4, 2]), Some(3.0));
    }
}
