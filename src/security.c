/*
 * security.c — running table code (index expressions and predicates) the way
 * VACUUM and REINDEX do: as the table's owner, inside a security-restricted
 * operation, with a search_path that holds nothing a user created.
 *
 * Whoever calls kdindex_train, or whose INSERT starts self-training, may be a
 * superuser; the functions in an index expression belong to the table's owner
 * and must not run with the caller's rights (the pattern of CVE-2022-1552).
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/rel.h"

#include "kdindex.h"

void
kd_become_owner(Relation heap, KdSecurityState *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(heap->rd_rel->relowner,
						   save->sec_context | SECURITY_RESTRICTED_OPERATION);
	save->nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

/* Undo kd_become_owner (an error does so by itself: the transaction's abort) */
void
kd_restore_user(const KdSecurityState *save)
{
	AtEOXact_GUC(false, save->nestlevel);
	SetUserIdAndSecContext(save->userid, save->sec_context);
}
