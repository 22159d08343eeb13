-- Distance operators on real[]: values computed by hand
SELECT '{1,2,3}'::real[] <-> '{4,6,3}' AS l2;                 -- sqrt(9 + 16) = 5
SELECT '{1,2,3}'::real[] <#> '{4,5,6}' AS neg_ip;             -- -(4 + 10 + 18) = -32
SELECT round(('{1,0}'::real[] <=> '{0,1}')::numeric, 6) AS orthogonal;   -- 1
SELECT round(('{1,1}'::real[] <=> '{2,2}')::numeric, 6) AS parallel;     -- 0
SELECT round(('{1,0}'::real[] <=> '{-3,0}')::numeric, 6) AS opposite;    -- 2
SELECT round(('{1,2,3}'::real[] <=> '{3,2,1}')::numeric, 6) AS cosine;  -- 1 - 10/14
SELECT '{0.5}'::real[] <-> '{-0.5}' AS one_dim;

-- commutative, strict
SELECT ('{1,2}'::real[] <-> '{3,5}') = ('{3,5}'::real[] <-> '{1,2}') AS commutes;
SELECT '{1,2}'::real[] <-> NULL AS null_arg;

-- zero vectors: no cosine distance (NaN, as pgvector)
SELECT '{0,0}'::real[] <=> '{1,1}' AS zero_cosine;

-- the functions behind the operators
SELECT kdindex_l2_distance('{0,0}', '{3,4}'), kdindex_negative_inner_product('{1,1}', '{2,3}'),
       kdindex_cosine_distance('{1,0}', '{1,0}');

-- the operators exist for ordering
SELECT oprname, oprleft::regtype, oprright::regtype, oprresult::regtype
  FROM pg_operator WHERE oprcode::text LIKE 'kdindex%' ORDER BY oprname;

-- the opclasses, and which one is the default
SELECT opcname, opcintype::regtype, opcdefault
  FROM pg_opclass WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex')
   AND opcintype = 'real[]'::regtype ORDER BY opcname;
SELECT amvalidate(oid) FROM pg_opclass
 WHERE opcmethod = (SELECT oid FROM pg_am WHERE amname = 'kdindex') ORDER BY opcname;
