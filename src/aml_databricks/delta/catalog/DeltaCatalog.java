package aml_databricks.delta;

import java.io.IOException;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.UUID;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.spark.sql.catalyst.analysis.NoSuchNamespaceException;
import org.apache.spark.sql.catalyst.analysis.NoSuchTableException;
import org.apache.spark.sql.catalyst.analysis.TableAlreadyExistsException;
import org.apache.spark.sql.catalyst.catalog.CatalogTable;
import org.apache.spark.sql.classic.SparkSession;
import org.apache.spark.sql.connector.catalog.Column;
import org.apache.spark.sql.connector.catalog.DelegatingCatalogExtension;
import org.apache.spark.sql.connector.catalog.Identifier;
import org.apache.spark.sql.connector.catalog.SupportsRead;
import org.apache.spark.sql.connector.catalog.SupportsWrite;
import org.apache.spark.sql.connector.catalog.Table;
import org.apache.spark.sql.connector.catalog.TableCapability;
import org.apache.spark.sql.connector.catalog.TableCatalog;
import org.apache.spark.sql.connector.catalog.V1Table;
import org.apache.spark.sql.connector.expressions.IdentityTransform;
import org.apache.spark.sql.connector.expressions.Transform;
import org.apache.spark.sql.connector.read.ScanBuilder;
import org.apache.spark.sql.connector.write.LogicalWriteInfo;
import org.apache.spark.sql.connector.write.WriteBuilder;
import org.apache.spark.sql.execution.datasources.parquet.ParquetFileFormat;
import org.apache.spark.sql.execution.datasources.v2.parquet.ParquetTable;
import org.apache.spark.sql.execution.datasources.v2.python.PythonDataSourceV2;
import org.apache.spark.sql.types.Metadata;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.sql.util.CaseInsensitiveStringMap;
import scala.Option;
import scala.jdk.javaapi.CollectionConverters;

/**
 * The session catalog of the local workspace's Spark servers: Delta tables through the `delta`
 * Python data source (aml_databricks.delta.source).
 *
 * Spark hands a catalog table's Python data source no options, so the source would not know where
 * the table is. This catalog loads tables whose provider is `delta` as the source's table with the
 * table's location (resolved through Hadoop's ViewFS to a local file: URI) as `path`; maps
 * `VERSION/TIMESTAMP AS OF` to the `versionAsOf`/`timestampAsOf` options; treats delta.`/path` as
 * a path table; and writes version 0 of the Delta log (schema, partition columns) when a Delta
 * table is created where none exists, so `CREATE TABLE t (...)` is a Delta table right away.
 * A read asks the source for the snapshot's files and, when they are plain parquet in Hive-style
 * folders, hands them to Spark's parquet scan, which prunes columns (a Python source can't).
 * Everything else goes to Spark's own session catalog.
 */
public class DeltaCatalog extends DelegatingCatalogExtension {
    private static final String DELTA = "delta";
    /** The path as the user knows it, for what is shown (aml_databricks.delta.commit.SHOWN_PATH_OPTION). */
    private static final String SHOWN_PATH = "__aml_shown_path";
    /** aml_databricks.delta.source.SNAPSHOT_FILES_OPTION */
    private static final String SNAPSHOT_FILES = "__aml_snapshot_files";

    @Override
    public Table loadTable(Identifier ident) throws NoSuchTableException {
        return load(ident, new HashMap<>());
    }

    @Override
    public Table loadTable(Identifier ident, String version) throws NoSuchTableException {
        Map<String, String> options = new HashMap<>();
        options.put("versionAsOf", version);
        return load(ident, options);
    }

    @Override
    public Table loadTable(Identifier ident, long timestamp) throws NoSuchTableException {
        Map<String, String> options = new HashMap<>();
        Instant moment = Instant.ofEpochSecond(timestamp / 1_000_000L, (timestamp % 1_000_000L) * 1000L);
        options.put("timestampAsOf", moment.toString());
        return load(ident, options);
    }

    @Override
    public boolean tableExists(Identifier ident) {
        if (isPathTable(ident)) {
            try {
                return exists(new Path(resolve(pathOf(ident)), "_delta_log"));
            } catch (IOException e) {
                return false;
            }
        }
        return super.tableExists(ident);
    }

    @Override
    public Table createTable(Identifier ident, Column[] columns, Transform[] partitions, Map<String, String> properties)
            throws TableAlreadyExistsException, NoSuchNamespaceException {
        String provider = properties.get(TableCatalog.PROP_PROVIDER);
        if (provider == null) {  // no USING clause: the session's default source, Delta as on Databricks
            provider = SparkSession.active().sessionState().conf().defaultDataSourceName();
        }
        if (!isDelta(provider)) {
            return super.createTable(ident, columns, partitions, properties);
        }
        // Partitions live in the Delta log, not in the metastore: the source takes no partitioning.
        Map<String, String> withProvider = new HashMap<>(properties);
        withProvider.put(TableCatalog.PROP_PROVIDER, DELTA);
        super.createTable(ident, columns, new Transform[0], withProvider);
        try {
            CatalogTable created = ((V1Table) super.loadTable(ident)).catalogTable();
            String location = resolve(created.location().toString());
            StructType schema = org.apache.spark.sql.connector.catalog.CatalogV2Util.v2ColumnsToStructType(columns);
            StructType written = writeFirstVersion(location, schema, partitionNames(partitions), properties);
            // The schema is known here: no Python round trip to read it back from the new log.
            return deltaTable(location, shownAs(created.location().toString()), written);
        } catch (NoSuchTableException | IOException e) {
            throw new IllegalStateException("could not create the Delta table " + ident + ": " + e.getMessage(), e);
        }
    }

    private Table load(Identifier ident, Map<String, String> options) throws NoSuchTableException {
        if (isPathTable(ident)) {
            try {
                return deltaTable(resolve(pathOf(ident)), options);
            } catch (IOException e) {
                throw new IllegalArgumentException("delta.`" + ident.name() + "`: " + e.getMessage(), e);
            }
        }
        Table table = super.loadTable(ident);
        if (table instanceof V1Table) {
            CatalogTable catalogTable = ((V1Table) table).catalogTable();
            if (catalogTable.provider().isDefined() && isDelta(catalogTable.provider().get())) {
                try {
                    Map<String, String> withShown = new HashMap<>(options);
                    withShown.putAll(shownAs(catalogTable.location().toString()));
                    return deltaTable(resolve(catalogTable.location().toString()), withShown);
                } catch (IOException e) {
                    throw new IllegalArgumentException("table " + ident + ": " + e.getMessage(), e);
                }
            }
        }
        if (!options.isEmpty()) {
            // Let Spark say, as it does, that this table has no time travel.
            return options.containsKey("versionAsOf")
                ? super.loadTable(ident, options.get("versionAsOf"))
                : super.loadTable(ident, 0L);
        }
        return table;
    }

    private static boolean isDelta(String provider) {
        return provider != null && provider.equalsIgnoreCase(DELTA);
    }

    private boolean isPathTable(Identifier ident) {
        String[] namespace = ident.namespace();
        return namespace.length == 1 && namespace[0].equalsIgnoreCase(DELTA)
            && (ident.name().startsWith("/") || ident.name().contains(":/"))
            && !namespaceExists(namespace);
    }

    private static String pathOf(Identifier ident) {
        String path = ident.name();
        return path.startsWith("dbfs:") ? path.substring("dbfs:".length()) : path;
    }

    private static Table deltaTable(String location, Map<String, String> options) {
        return deltaTable(location, options, null);
    }

    /** The source's table at `location`; its schema read from the Delta log unless `known`. */
    private static Table deltaTable(String location, Map<String, String> options, StructType known) {
        Map<String, String> all = new HashMap<>(options);
        all.put("path", location);
        PythonDataSourceV2 source = new PythonDataSourceV2();
        source.setShortName(DELTA);
        StructType schema = known != null ? known : source.inferSchema(new CaseInsensitiveStringMap(all));
        return new WithOptions((SupportsRead) source.getTable(schema, new Transform[0], all), all);
    }

    /** The source's table, with the table's own options (its path) added to every read and write. */
    static final class WithOptions implements SupportsRead, SupportsWrite {
        private final SupportsRead table;
        private final Map<String, String> options;

        WithOptions(SupportsRead table, Map<String, String> options) {
            this.table = table;
            this.options = options;
        }

        private CaseInsensitiveStringMap merged(CaseInsensitiveStringMap given) {
            Map<String, String> all = new HashMap<>(given.asCaseSensitiveMap());
            all.putAll(options);
            return new CaseInsensitiveStringMap(all);
        }

        @Override public String name() { return table.name(); }
        @Override public StructType schema() { return table.schema(); }
        @Override public Column[] columns() { return table.columns(); }
        @Override public Transform[] partitioning() { return table.partitioning(); }
        @Override
        public Map<String, String> properties() {  // DESCRIBE TABLE EXTENDED shows these
            Map<String, String> shown = new HashMap<>(table.properties());
            shown.put(TableCatalog.PROP_PROVIDER, DELTA);
            shown.put(TableCatalog.PROP_LOCATION, options.getOrDefault(SHOWN_PATH, options.get("path")));
            return shown;
        }
        @Override public Set<TableCapability> capabilities() { return table.capabilities(); }

        @Override
        public ScanBuilder newScanBuilder(CaseInsensitiveStringMap given) {
            CaseInsensitiveStringMap all = merged(given);
            SupportsRead parquet = parquetSnapshot(all, schema());
            return parquet != null ? parquet.newScanBuilder(given) : table.newScanBuilder(all);
        }

        @Override
        public WriteBuilder newWriteBuilder(LogicalWriteInfo info) {
            CaseInsensitiveStringMap all = merged(info.options());
            LogicalWriteInfo withPath = new LogicalWriteInfo() {
                @Override public CaseInsensitiveStringMap options() { return all; }
                @Override public String queryId() { return info.queryId(); }
                @Override public StructType schema() { return info.schema(); }
                @Override public Optional<StructType> rowIdSchema() { return info.rowIdSchema(); }
                @Override public Optional<StructType> metadataSchema() { return info.metadataSchema(); }
            };
            return ((SupportsWrite) table).newWriteBuilder(withPath);
        }
    }

    /**
     * Spark's parquet table over the snapshot's data files (the version the options pin), or null
     * when only the source reads them exactly (no files, or folders that are not the partition values).
     */
    private static SupportsRead parquetSnapshot(CaseInsensitiveStringMap options, StructType schema) {
        Map<String, String> ask = new HashMap<>(options.asCaseSensitiveMap());
        ask.put(SNAPSHOT_FILES, "true");
        PythonDataSourceV2 source = new PythonDataSourceV2();
        source.setShortName(DELTA);
        Metadata snapshot = source.inferSchema(new CaseInsensitiveStringMap(ask)).fields()[0].metadata();
        if (!snapshot.getBoolean("native")) {
            return null;
        }
        Map<String, String> parquetOptions = new HashMap<>();
        parquetOptions.put("basePath", snapshot.getString("root"));  // partition values from the Hive-style folders
        List<String> files = Arrays.asList(snapshot.getStringArray("files"));
        return new ParquetTable(DELTA, SparkSession.active(), new CaseInsensitiveStringMap(parquetOptions),
            CollectionConverters.asScala(files).toList(), Option.apply(schema), ParquetFileFormat.class);
    }

    private static Configuration hadoopConf() {
        return SparkSession.active().sessionState().newHadoopConf();
    }

    private static boolean exists(Path path) throws IOException {
        return path.getFileSystem(hadoopConf()).exists(path);
    }

    /**
     * A catalog table's location as Databricks shows it (DESCRIBE EXTENDED, DESCRIBE DETAIL, messages):
     * `dbfs:/user/hive/warehouse/t` rather than the DBFS root's ViewFS URI or the local folder behind it.
     */
    private static Map<String, String> shownAs(String location) {
        Map<String, String> shown = new HashMap<>();
        String viewfsRoot = "viewfs://dbfs/";
        if (location.startsWith(viewfsRoot)) {
            shown.put(SHOWN_PATH, "dbfs:/" + location.substring(viewfsRoot.length()));
        }
        return shown;
    }

    /** The local file: URI behind a location, through this session's ViewFS mount table. */
    static String resolve(String location) throws IOException {
        Configuration conf = hadoopConf();
        Path path = new Path(location);
        FileSystem fs = path.getFileSystem(conf);
        Path existing = fs.makeQualified(path);
        StringBuilder rest = new StringBuilder();
        while (existing.getParent() != null && !fs.exists(existing)) {
            rest.insert(0, "/" + existing.getName());
            existing = existing.getParent();
        }
        return fs.resolvePath(existing).toString() + rest;
    }

    private static List<String> partitionNames(Transform[] partitions) {
        List<String> names = new ArrayList<>();
        for (Transform transform : partitions) {
            if (!(transform instanceof IdentityTransform)) {
                throw new IllegalArgumentException("[DELTA_UNSUPPORTED_LOCALLY] Partition transform " + transform.describe()
                    + " is not supported by the local workspace's Delta tables: partition by columns.");
            }
            names.add(String.join(".", ((IdentityTransform) transform).ref().fieldNames()));
        }
        return names;
    }

    /**
     * Version 0 of a new, empty Delta table, unless a Delta log is already there (CREATE TABLE ... LOCATION).
     * Returns the schema written, or null when the table already existed.
     */
    private static StructType writeFirstVersion(String location, StructType schema, List<String> partitionColumns,
                                                Map<String, String> properties) throws IOException {
        Path log = new Path(location, "_delta_log");
        FileSystem fs = log.getFileSystem(hadoopConf());
        if (fs.exists(log) && fs.listStatus(log).length > 0) {
            return null;  // an existing table keeps its own schema: read it from its log
        }
        fs.mkdirs(log);
        StructType nullable = new StructType();
        for (StructField field : schema.fields()) {
            nullable = nullable.add(field.name(), field.dataType(), true, field.metadata());
        }
        long now = System.currentTimeMillis();
        StringBuilder configuration = new StringBuilder("{");
        for (Map.Entry<String, String> entry : properties.entrySet()) {
            if (entry.getKey().startsWith("delta.")) {
                configuration.append(configuration.length() > 1 ? "," : "")
                    .append(quote(entry.getKey())).append(':').append(quote(entry.getValue()));
            }
        }
        configuration.append('}');
        StringBuilder partitions = new StringBuilder("[");
        for (String name : partitionColumns) {
            partitions.append(partitions.length() > 1 ? "," : "").append(quote(name));
        }
        partitions.append(']');
        String commit = "{\"commitInfo\":{\"timestamp\":" + now + ",\"operation\":\"CREATE TABLE\","
            + "\"operationParameters\":{\"isManaged\":\"false\",\"partitionBy\":" + quote(partitions.toString()) + "},"
            + "\"isBlindAppend\":true,\"engineInfo\":\"aml-databricks DeltaCatalog\"}}\n"
            + "{\"protocol\":{\"minReaderVersion\":1,\"minWriterVersion\":2}}\n"
            + "{\"metaData\":{\"id\":" + quote(UUID.randomUUID().toString()) + ",\"format\":{\"provider\":\"parquet\","
            + "\"options\":{}},\"schemaString\":" + quote(nullable.json()) + ",\"partitionColumns\":" + partitions
            + ",\"configuration\":" + configuration + ",\"createdTime\":" + now + "}}\n";
        Path first = new Path(log, "00000000000000000000.json");
        try (OutputStream out = fs.create(first, false)) {
            out.write(commit.getBytes(StandardCharsets.UTF_8));
        }
        return nullable;
    }

    private static String quote(String text) {
        StringBuilder out = new StringBuilder("\"");
        for (char c : text.toCharArray()) {
            switch (c) {
                case '"': out.append("\\\""); break;
                case '\\': out.append("\\\\"); break;
                case '\n': out.append("\\n"); break;
                case '\r': out.append("\\r"); break;
                case '\t': out.append("\\t"); break;
                default:
                    if (c < 0x20) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
            }
        }
        return out.append('"').toString();
    }
}
