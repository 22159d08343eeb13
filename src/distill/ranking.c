/*
 * ranking.c — the listwise ranking losses of distillation, with their
 * gradients with respect to the student's scores (train.c applies them).
 */
#include "postgres.h"

#include <math.h>

#include "distill/student.h"

static double
logsumexp(const double *s, int n)
{
	double		mx = -INFINITY,
				sum = 0;

	for (int i = 0; i < n; i++)
		mx = Max(mx, s[i]);
	for (int i = 0; i < n; i++)
		sum += exp(s[i] - mx);
	return mx + log(sum);
}

/*
 * ListMLE with hard negatives for one query's scores s[0..n-1] (teacher
 * order); adds dL/ds to gs, returns L.  Denominator i holds ranks i..top-1
 * and all ranks from top on.
 */
double
kd_listmle(const double *s, int n, int top, double *gs)
{
	double		loss = 0;
	double	   *den = palloc(sizeof(double) * n);

	top = Min(top, n);
	for (int i = 0; i < top; i++)
	{
		int			nden = n - i;
		double		lse;

		memcpy(den, s + i, sizeof(double) * nden);
		lse = logsumexp(den, nden);
		loss -= s[i] - lse;
		gs[i] -= 1;
		for (int j = i; j < n; j++)
			gs[j] += exp(s[j] - lse);
	}
	pfree(den);
	return loss;
}

/* ListNet: -sum softmax(t) log softmax(s); adds dL/ds = softmax(s) - softmax(t) */
double
kd_listnet(const double *s, const double *t, int n, double *gs)
{
	double		ls = logsumexp(s, n),
				lt = logsumexp(t, n),
				loss = 0;

	for (int i = 0; i < n; i++)
	{
		double		pt = exp(t[i] - lt);

		loss -= pt * (s[i] - ls);
		gs[i] += exp(s[i] - ls) - pt;
	}
	return loss;
}
