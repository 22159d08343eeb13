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

#include "access/table.h"
#include "catalog/catalog.h"
#include "catalog/index.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_class.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "kdindex.h"

void
kd_become_owner(Relation heap, KdSecurityState *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(heap->rd_rel->relowner,
						   save->sec_context | SECURITY_RESTRICTED_OPERATION);
	save->nestlevel = kd_pin_search_path();
}

/* Undo kd_become_owner (an error does so by itself: the transaction's abort) */
void
kd_restore_user(const KdSecurityState *save)
{
	kd_unpin_search_path(save->nestlevel);
	SetUserIdAndSecContext(save->userid, save->sec_context);
}

/*
 * Privileges.  Every SQL function of kdindex is callable by any role that can
 * connect, and an index or table is named by regclass, which any role can
 * spell as an OID: what a function may do is decided here, from the table's
 * ACL and owner, before any heavyweight lock is taken (as REINDEX and
 * pgstatindex do), so a role without rights cannot even queue behind others.
 */

static void
check_table_privilege(Oid heapoid, KdPrivilege need)
{
	Oid			userid = GetUserId();
	char		relkind = get_rel_relkind(heapoid);
	char	   *name = get_rel_name(heapoid);

	if (name == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", heapoid)));
	switch (need)
	{
		case KD_PRIV_OWNER:
			if (!pg_class_ownercheck(heapoid, userid))
				aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(relkind), name);
			break;
		case KD_PRIV_STATS:
			if (has_privs_of_role(userid, ROLE_PG_STAT_SCAN_TABLES))
				break;
			/* FALLTHROUGH */
		case KD_PRIV_SELECT:
			if (pg_class_aclcheck(heapoid, userid, ACL_SELECT) != ACLCHECK_OK)
				aclcheck_error(ACLCHECK_NO_PRIV, get_relkind_objtype(relkind), name);
			break;
	}
}

/*
 * The table of kdindex index indexoid, once the current user is found to
 * have need on it; takes no lock.  Anything but a kdindex index (with
 * storage: not a partitioned one) is refused by name.
 */
Oid
kd_index_table_checked(Oid indexoid, KdPrivilege need)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(indexoid));
	Form_pg_class form;
	Oid			heapoid;

	if (!HeapTupleIsValid(tup))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", indexoid)));
	form = (Form_pg_class) GETSTRUCT(tup);
	if ((form->relkind != RELKIND_INDEX && form->relkind != RELKIND_PARTITIONED_INDEX) ||
		form->relam != get_index_am_oid("kdindex", false))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a kdindex index", NameStr(form->relname))));
	if (form->relkind == RELKIND_PARTITIONED_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is a partitioned index", NameStr(form->relname)),
				 errhint("Name the index of each partition instead.")));
	ReleaseSysCache(tup);
	heapoid = IndexGetRelation(indexoid, false);
	check_table_privilege(heapoid, need);
	return heapoid;
}

/*
 * Lock a table, then its kdindex index (the order of REINDEX), and check the
 * index is still that table's: it may have been dropped, and its OID reused,
 * while we waited.  heaplock may be NoLock (then *heap is not opened).
 */
Relation
kd_lock_index(Oid indexoid, Oid heapoid, LOCKMODE heaplock, LOCKMODE indexlock, Relation *heap)
{
	Relation	index;

	if (heaplock != NoLock)
		LockRelationOid(heapoid, heaplock);
	LockRelationOid(indexoid, indexlock);
	if (IndexGetRelation(indexoid, true) != heapoid)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("index with OID %u was dropped or changed meanwhile", indexoid)));
	index = kd_open_index(indexoid, NoLock);
	if (heap != NULL)
		*heap = heaplock != NoLock ? table_open(heapoid, NoLock) : NULL;
	return index;
}

/*
 * SELECT on a relation a function reads (teacher and query tables), which
 * must be one a query can read: not an index, sequence or composite type.
 */
void
kd_check_select(Oid relid)
{
	char		relkind;

	check_table_privilege(relid, KD_PRIV_SELECT);
	relkind = get_rel_relkind(relid);
	if (relkind != RELKIND_RELATION && relkind != RELKIND_MATVIEW && relkind != RELKIND_VIEW &&
		relkind != RELKIND_PARTITIONED_TABLE && relkind != RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table, view or materialized view", get_rel_name(relid))));
}

/*
 * SPI queries run as the caller read with a search_path that holds nothing
 * a user created, so that no one can shadow an operator or function they
 * use; undo with kd_unpin_search_path.
 */
int
kd_pin_search_path(void)
{
	int			nestlevel = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

void
kd_unpin_search_path(int nestlevel)
{
	AtEOXact_GUC(false, nestlevel);
}
