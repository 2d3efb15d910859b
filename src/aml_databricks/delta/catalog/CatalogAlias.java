package aml_databricks.delta;

import org.apache.spark.sql.classic.SparkSession;
import org.apache.spark.sql.connector.catalog.DelegatingCatalogExtension;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;

/**
 * Another name for the session catalog: `hive_metastore` and `main`, as a Databricks notebook names
 * its catalogs (`spark.table("main.default.t")`, `saveAsTable("hive_metastore.db.t")`, `USE CATALOG main`).
 *
 * Registered as `spark.sql.catalog.<alias>`, it hands every call to the session catalog (the
 * DeltaCatalog, so Delta tables are Delta here too). Its `name()` is the session catalog's, and that
 * is the point: Spark decides by a catalog's name whether it is the session catalog, and only then
 * runs a table's V1 paths (parquet tables' writes, views, `DESCRIBE`, `ALTER`, `CACHE`), which a
 * plugin with another name cannot take. Only `current_catalog()` and `spark.catalog.currentCatalog()`
 * get the alias, so that after `USE CATALOG main` they say `main` as on Databricks.
 */
public class CatalogAlias extends DelegatingCatalogExtension {
    /**
     * The callers that get the alias, as (class name part, method name part): Spark's optimizer rule
     * and Catalog API, which report the current catalog; the planner's `USE [CATALOG] x` and the
     * catalog manager's switch, which would otherwise leave `main` for `spark_catalog` at `USE db`,
     * or take `USE CATALOG spark_catalog` after `USE CATALOG main` for no change at all.
     */
    private static final String[][] ALIAS_CALLERS = {
        {"ReplaceCurrentLike", ""}, {".classic.Catalog", "currentCatalog"}, {"CatalogManager", "setCurrentCatalog"},
        {"DataSourceV2Strategy", "apply"},
    };
    private static final StackWalker STACK = StackWalker.getInstance();
    private String alias = "";

    @Override
    public void initialize(String name, CaseInsensitiveStringMap options) {
        alias = name;
        // Catalogs are loaded per session, in that session's thread: its session catalog is the delegate.
        setDelegateCatalog(SparkSession.active().sessionState().catalogManager().v2SessionCatalog());
    }

    @Override
    public String name() {
        // Spark asks a catalog's name everywhere; only ALIAS_CALLERS, as the direct caller, see the alias
        // (not an isSessionCatalog check made on their behalf, which must see the session catalog's name).
        boolean aliasCaller = STACK.walk(frames -> frames.skip(1).findFirst().map(frame -> {
            for (String[] caller : ALIAS_CALLERS) {
                if (frame.getClassName().contains(caller[0]) && frame.getMethodName().contains(caller[1])) {
                    return true;
                }
            }
            return false;
        }).orElse(false));
        return aliasCaller ? alias : super.name();
    }
}
